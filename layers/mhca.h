#pragma once
// MHCA, multi-head convolutional attention: a grouped 3x3 conv with head_dim channels per group
// (each group is one "head" mixing its channels over a 3x3 neighbourhood), BN + ReLU (fused),
// then a 1x1 projection mixing the heads.
#include <memory>

#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/conv_bn.h"

namespace nextvit {

class MHCA : public Module {
 public:
  MHCA(int64_t channels, int64_t head_dim);
  // mhca(x), or residual + mhca(x) when a residual is given (the block's add, run by the
  // projection).
  Variable forward(const Variable& x, const Variable& residual = Variable()) {
    profiler::ModuleScope scope(profile_id());
    const Variable heads = conv_bn(*group_conv3x3, *norm, x, /*relu=*/true);
    return residual.defined() ? conv_add(*projection, heads, residual) : projection->forward(heads);
  }

  std::shared_ptr<Conv2d> group_conv3x3;
  std::shared_ptr<BatchNorm> norm;
  std::shared_ptr<Conv2d> projection;
};

}  // namespace nextvit
