#include "layers/conv_bn.h"

namespace nextvit {
namespace {

// The layer's parameters and running statistics, as the fused op takes them.
ops::EvalBatchNorm eval_form(const BatchNorm& bn) {
  return {bn.weight(), bn.bias(), bn.running_mean(), bn.running_var(), bn.eps()};
}

}  // namespace

Variable conv_bn(const Conv2d& conv, BatchNorm& bn, const Variable& x, bool relu) {
  if (bn.is_training())
    return relu ? bn.forward_relu(conv.forward(x)) : bn.forward(conv.forward(x));
  if (bn.folded()) {
    return ops::conv2d_eval_fused(x, conv.weight(), conv.bias(), conv.options(), nullptr, relu);
  }
  const ops::EvalBatchNorm eval = eval_form(bn);
  return ops::conv2d_eval_fused(x, conv.weight(), conv.bias(), conv.options(), &eval, relu);
}

Variable conv_relu(const Conv2d& conv, const Variable& x) {
  if (conv.is_training()) return ops::relu(conv.forward(x));
  return ops::conv2d_eval_fused(x, conv.weight(), conv.bias(), conv.options(), nullptr, true);
}

Variable conv_add(const Conv2d& conv, const Variable& x, const Variable& residual) {
  if (conv.is_training()) return ops::add(residual, conv.forward(x));
  return ops::conv2d_eval_fused(x, conv.weight(), conv.bias(), conv.options(), nullptr, false,
                                residual);
}

Variable bn_conv_relu(BatchNorm& bn, const Conv2d& conv, const Variable& x) {
  if (bn.is_training()) return ops::relu(conv.forward(bn.forward(x)));
  if (bn.folded()) return conv_relu(conv, x);
  const ops::EvalBatchNorm eval = eval_form(bn);
  return ops::conv2d_eval_fused(x, conv.weight(), conv.bias(), conv.options(), nullptr, true,
                                Variable(), &eval);
}

}  // namespace nextvit
