// conv2d_eval_fused: [BatchNorm (eval) ->] Conv -> BatchNorm (eval) -> ReLU -> residual add for
// inference. How data moves on the CPU: each BatchNorm's per-channel map is first reduced to
// y = alpha * x + beta (the same alpha and beta, in the same float operations, as the BatchNorm
// kernel). The convolution kernel applies the output map, the ReLU and the add of the residual
// to each block of output right after its GEMM wrote the block (kernels/cpu/conv_output_pass.h),
// and the input map (a 1x1 convolution only) while the GEMM packs the input's rows
// (GemmRowAffine in kernels/gemm.h), instead of up to four more passes over new tensors.
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "autograd/ops/conv2d_impl.h"
#include "kernels/batch_norm_stats.h"
#include "kernels/conv2d.h"

namespace nextvit::ops {
namespace {

// The BatchNorm op in eval mode (with its ReLU when relu).
Variable eval_batch_norm(const Variable& x, const EvalBatchNorm& bn, bool relu) {
  BatchNormOptions o;
  o.training = false;
  o.eps = bn.eps;
  return relu ? batch_norm_relu(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, o)
              : batch_norm(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, o);
}

// The separate ops, for CUDA and whenever a gradient is recorded.
Variable unfused(const Variable& x, const Variable& weight, const Variable& bias,
                 const Conv2dOptions& options, const EvalBatchNorm* bn, bool relu,
                 const Variable& residual) {
  Variable y = conv2d(x, weight, bias, options);
  if (bn != nullptr) {
    y = eval_batch_norm(y, *bn, relu);
  } else if (relu) {
    y = ops::relu(y);
  }
  return residual.defined() ? add(residual, y) : y;
}

// The BatchNorm's (alpha, beta) per channel, as host vectors; `side` names the channels
// ("input" or "output") in errors.
void eval_affine(const EvalBatchNorm& bn, int64_t channels, const char* side,
                 std::vector<float>& alpha, std::vector<float>& beta) {
  auto host = [&](const Tensor& t, const char* what) {
    NV_CHECK(t.defined() && t.dtype() == DType::F32 && t.numel() == channels,
             "conv2d_eval_fused: {} BatchNorm {} must be f32 of {} values (one per {} channel)",
             side, what, channels, side);
    return t.to_vector();
  };
  const std::vector<float> mean = host(bn.running_mean, "running_mean");
  const std::vector<float> var = host(bn.running_var, "running_var");
  std::vector<float> gamma, shift;
  if (bn.weight.defined()) gamma = host(bn.weight.data(), "weight");
  if (bn.bias.defined()) shift = host(bn.bias.data(), "bias");
  alpha.resize(static_cast<size_t>(channels));
  beta.resize(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const kernels::BatchNormAffine a = kernels::batch_norm_affine(
        mean[c], kernels::batch_norm_eval_invstd(var[c], bn.eps),
        gamma.empty() ? nullptr : gamma.data(), shift.empty() ? nullptr : shift.data(), c);
    alpha[c] = a.alpha;
    beta[c] = a.beta;
  }
}

}  // namespace

Variable conv2d_eval_fused(const Variable& x, const Variable& weight, const Variable& bias,
                           const Conv2dOptions& options, const EvalBatchNorm* bn, bool relu,
                           const Variable& residual, const EvalBatchNorm* input_bn) {
  const Variable none;
  const Variable& bn_weight = bn ? bn->weight : none;
  const Variable& bn_bias = bn ? bn->bias : none;
  const Variable& in_weight = input_bn ? input_bn->weight : none;
  const Variable& in_bias = input_bn ? input_bn->bias : none;
  const std::initializer_list<const Variable*> inputs = {
      &x, &weight, &bias, &bn_weight, &bn_bias, &residual, &in_weight, &in_bias};
  const Device dev = common_device(inputs, "conv2d_eval_fused");
  if (!dev.is_cpu() || records_gradient(inputs)) {
    const Variable xin = input_bn ? eval_batch_norm(x, *input_bn, false) : x;
    return unfused(xin, weight, bias, options, bn, relu, residual);
  }
  Tensor tx = f32_input(x, "conv2d", "x"), tw = f32_input(weight, "conv2d", "weight");
  Tensor tb = bias.defined() ? f32_input(bias, "conv2d", "bias") : Tensor();
  const kernels::Conv2dShape s = detail::conv2d_shape(tx, tw, tb, options);
  if (input_bn != nullptr && !s.pointwise()) {
    // Only a 1x1 convolution reads its input as plain rows; any other runs the BatchNorm first.
    return conv2d_eval_fused(eval_batch_norm(x, *input_bn, false), weight, bias, options, bn, relu,
                             residual);
  }
  profiler::OpScope scope(detail::conv_op_kind(weight, options));
  std::vector<float> alpha, beta, in_alpha, in_beta;
  kernels::cpu::Conv2dEpilogue epilogue;
  if (bn != nullptr) {
    eval_affine(*bn, s.out_channels, "output", alpha, beta);
    epilogue.scale = alpha.data();
    epilogue.shift = beta.data();
  }
  kernels::cpu::Conv2dPrologue prologue;
  if (input_bn != nullptr) {
    eval_affine(*input_bn, s.in_channels, "input", in_alpha, in_beta);
    prologue.scale = in_alpha.data();
    prologue.shift = in_beta.data();
  }
  epilogue.relu = relu;
  Tensor y = new_f32({s.batch, s.out_channels, s.out_h(), s.out_w()}, dev);
  Tensor tr;  // kept alive until the kernel has read it
  if (residual.defined()) {
    tr = f32_input(residual, "conv2d_eval_fused", "residual");
    NV_CHECK(tr.shape() == y.shape(),
             "conv2d_eval_fused: residual of shape {} cannot be added to the output of shape {}",
             shape_str(tr.shape()), shape_str(y.shape()));
    epilogue.residual = tr.data<float>();
  }
  kernels::cpu::conv2d_forward_fused(s, tx.data<float>(), tw.data<float>(), f32_or_null(tb),
                                     epilogue, y.data<float>(), prologue);
  return Variable(y);
}

}  // namespace nextvit::ops
