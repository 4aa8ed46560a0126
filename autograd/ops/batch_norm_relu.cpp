// batch_norm_relu: relu(batch_norm(x)) as one op. The forward kernel clamps on the store, so the
// normalised tensor before the ReLU is never written; the backward masks dL/dy by y > 0 inside
// the BatchNorm backward kernel instead of running a separate ReLU backward. Inputs, checks
// and statistics are those of batch_norm (batch_norm.cpp).
// Derivation: docs/derivations.md#batchnorm-backward-train-mode
#include "autograd/ops.h"
#include "autograd/ops/batch_norm_impl.h"

namespace nextvit::ops {

Variable batch_norm_relu(const Variable& x, const Variable& weight, const Variable& bias,
                         const Tensor& running_mean, const Tensor& running_var,
                         const BatchNormOptions& options) {
  profiler::OpScope scope(profiler::OpKind::BatchNorm);
  return detail::batch_norm_impl(x, weight, bias, running_mean, running_var, options,
                                 /*relu=*/true, "batch_norm_relu");
}

}  // namespace nextvit::ops
