#pragma once
// E-MHSA, efficient multi-head self-attention, on tokens x (B, N, C), heads = C / head_dim:
//   q = Linear_q(x)                                   (B, N, C)  -> (B, h, N, d)
//   if sr > 1: x' = BN1d(AvgPool1d(sr^2)(x^T))^T       pools sr^2 consecutive tokens in raster
//              order (not a 2-D window), then normalises: (B, N / sr^2, C)
//   k = Linear_k(x'), v = Linear_v(x')                (B, h, N', d)
//   out = Linear_proj(softmax(q k^T / sqrt(d)) v)     (B, N, C)
#include <memory>

#include "layers/batch_norm.h"
#include "layers/linear.h"

namespace nextvit {

class EMHSA : public Module {
 public:
  EMHSA(int64_t dim, int64_t head_dim, int64_t sr_ratio);
  Variable forward(const Variable& x);
  int64_t sr_ratio() const { return sr_ratio_; }
  int64_t heads() const { return heads_; }

  std::shared_ptr<Linear> q, k, v, proj;
  std::shared_ptr<BatchNorm> norm;  // null when sr_ratio == 1

 private:
  int64_t dim_, head_dim_, heads_, sr_ratio_;
};

}  // namespace nextvit
