#pragma once
// E-MHSA, efficient multi-head self-attention, on tokens x (B, N, C), heads = C / head_dim:
//   q = Linear_q(x)                                   (B, N, C)  -> (B, h, N, d)
//   if sr > 1: x' = BN1d(AvgPool1d(sr^2)(x^T))^T       pools sr^2 consecutive tokens in raster
//              order (not a 2-D window), then normalises: (B, N / sr^2, C)
//   k = Linear_k(x'), v = Linear_v(x')                (B, h, N', d)
//   out = Linear_proj(softmax(q k^T / sqrt(d)) v)     (B, N, C)
// For inference, forward_image runs the same on (B, C, H, W) maps without the transposes.
// The attention runs as one fused op (ops::pooled_attention) when its kernel takes the sizes on
// the input's device (always at Next-ViT's shapes), otherwise as matmul, scale, softmax, matmul.
#include <memory>

#include "layers/batch_norm.h"
#include "layers/linear.h"

namespace nextvit {

// softmax(scale q k^T) v on per-head tensors q (B, h, N, d), k and v (B, h, N', d) -> (B, h, N, d).
// The unfused composition of four ops is the reference the fused op is tested against and the
// path taken where the fused kernel does not fit (e.g. head_dim 64 on CUDA).
Variable emhsa_attention_unfused(const Variable& q, const Variable& k, const Variable& v,
                                 float scale);
// ops::pooled_attention where its kernel takes these sizes on this device, else the unfused path.
Variable emhsa_attention(const Variable& q, const Variable& k, const Variable& v, float scale);

class EMHSA : public Module {
 public:
  EMHSA(int64_t dim, int64_t head_dim, int64_t sr_ratio);
  Variable forward(const Variable& x);
  // residual + forward(x as tokens), given and returned as images (B, C, H, W) instead: the
  // same computation with the linear layers as 1x1 convolutions and the attention on the
  // heads' channel rows (ops::pooled_attention_channels), so that no token transpose or head
  // permutation is made, and the residual add runs in the last product's output pass. NTB's
  // inference path on the CPU; equal to the token form up to the order of float roundings.
  Variable forward_image(const Variable& x, const Variable& residual);
  int64_t sr_ratio() const { return sr_ratio_; }
  int64_t heads() const { return heads_; }
  // Off: always the unfused reference path (tests compare the two on the same weights).
  void set_fused_attention(bool on) { fused_attention_ = on; }

  std::shared_ptr<Linear> q, k, v, proj;
  std::shared_ptr<BatchNorm> norm;  // null when sr_ratio == 1

 private:
  // norm(AvgPool1d(sr^2)(x)) of channel-major tokens x (B, C, N) -> (B, C, N / sr^2).
  Variable pooled_keys(const Variable& x);

  int64_t dim_, head_dim_, heads_, sr_ratio_;
  bool fused_attention_ = true;
};

}  // namespace nextvit
