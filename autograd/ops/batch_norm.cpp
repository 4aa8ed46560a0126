// batch_norm: BatchNorm over channel dim 1 of (N, C, *), training and eval, with its backward.
// batch_norm_relu (batch_norm_relu.cpp) runs through the same function with the ReLU fused in.
#include "kernels/batch_norm.h"
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "autograd/ops/batch_norm_impl.h"
#include "kernels/dispatch.h"

namespace nextvit::ops {
namespace detail {
namespace {

// weight / bias: undefined (no affine map) or f32 (C) on the input's device.
Tensor affine_param(const Variable& v, const char* what, const Tensor& x, const char* op) {
  if (!v.defined()) return Tensor();
  Tensor t = f32_input(v, op, what);
  NV_CHECK(t.dim() == 1 && t.size(0) == x.size(1),
           "{}: {} {} does not match the {} channels of input {}", op, what, shape_str(t.shape()),
           x.size(1), shape_str(x.shape()));
  return t;
}

// running_mean / running_var: f32 (C), contiguous (it is updated in place), on x's device.
void check_running(const Tensor& t, const char* what, const Tensor& x, const char* op) {
  NV_CHECK(t.dtype() == DType::F32, "{}: {} must be f32, got {}", op, what, dtype_name(t.dtype()));
  NV_CHECK(t.dim() == 1 && t.size(0) == x.size(1),
           "{}: {} {} does not match the {} channels of input {}", op, what, shape_str(t.shape()),
           x.size(1), shape_str(x.shape()));
  NV_CHECK(t.device() == x.device(), "{}: {} is on {} but the input is on {}", op, what,
           t.device().str(), x.device().str());
  NV_CHECK(t.is_contiguous(), "{}: {} must be contiguous (it is updated in place)", op, what);
}

}  // namespace

Variable batch_norm_impl(const Variable& x, const Variable& weight, const Variable& bias,
                         const Tensor& running_mean, const Tensor& running_var,
                         const BatchNormOptions& options, bool relu, const char* op) {
  Tensor tx = f32_input(x, op, "x");
  NV_CHECK(tx.dim() >= 2, "{}: expected input (N, C, *) with at least 2 dimensions, got {}", op,
           shape_str(tx.shape()));
  const Device dev = common_device({&x, &weight, &bias}, op);
  Tensor tw = affine_param(weight, "weight", tx, op);
  Tensor tb = affine_param(bias, "bias", tx, op);

  kernels::BatchNormShape s;
  s.batch = tx.size(0);
  s.channels = tx.size(1);
  s.spatial = tx.numel() / (s.batch * s.channels > 0 ? s.batch * s.channels : 1);

  const bool has_running = running_mean.defined() || running_var.defined();
  if (has_running) {
    NV_CHECK(running_mean.defined() && running_var.defined(),
             "{}: running_mean and running_var must both be given or both be undefined", op);
    check_running(running_mean, "running_mean", tx, op);
    check_running(running_var, "running_var", tx, op);
  }
  NV_CHECK(options.training || has_running,
           "{}: eval mode needs running_mean and running_var (input {})", op,
           shape_str(tx.shape()));
  NV_CHECK(!options.training || s.count() > 1,
           "{}: expected more than 1 value per channel when training, got input {}", op,
           shape_str(tx.shape()));

  if (options.training && options.sum_across_processes) {
    return sync_batch_norm_train(x, weight, bias, tw, tb, running_mean, running_var, options, relu,
                                 op);
  }

  Tensor y = new_f32(tx.shape(), dev);
  Tensor save_mean = new_f32({s.channels}, dev), save_invstd = new_f32({s.channels}, dev);
  if (options.training) {
    float* rm = has_running ? running_mean.data<float>() : nullptr;
    float* rv = has_running ? running_var.data<float>() : nullptr;
    NV_DISPATCH(dev, batch_norm_forward_train, s, tx.data<float>(), f32_or_null(tw),
                f32_or_null(tb), options.momentum, options.eps, rm, rv, relu, y.data<float>(),
                save_mean.data<float>(), save_invstd.data<float>());
  } else {
    NV_DISPATCH(dev, batch_norm_forward_eval, s, tx.data<float>(), f32_or_null(tw), f32_or_null(tb),
                running_mean.data<float>(), running_var.data<float>(), options.eps, relu,
                y.data<float>(), save_mean.data<float>(), save_invstd.data<float>());
  }

  // The backward keeps the statistics the forward used (the running ones may be updated by a
  // later training step before this backward runs) and, for the fused op, y for the ReLU mask.
  const bool need_dx = x.requires_grad(), need_dw = weight.requires_grad(),
             need_db = bias.requires_grad();
  const bool training = options.training;
  Tensor y_relu = relu ? y : Tensor();
  // Derivation: docs/derivations.md#batchnorm-backward-train-mode
  return make_result(y, {x, weight, bias}, op, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = need_dx ? new_f32(tx.shape(), dev) : Tensor();
    Tensor dw = need_dw ? new_f32({s.channels}, dev) : Tensor();
    Tensor db = need_db ? new_f32({s.channels}, dev) : Tensor();
    NV_DISPATCH(dev, batch_norm_backward, s, tx.data<float>(), gc.data<float>(),
                f32_or_null(y_relu), f32_or_null(tw), save_mean.data<float>(),
                save_invstd.data<float>(), training, f32_or_null(dx), f32_or_null(dw),
                f32_or_null(db));
    return std::vector<Tensor>{dx, dw, db};
  });
}

}  // namespace detail

Variable batch_norm(const Variable& x, const Variable& weight, const Variable& bias,
                    const Tensor& running_mean, const Tensor& running_var,
                    const BatchNormOptions& options) {
  profiler::OpScope scope(profiler::OpKind::BatchNorm);
  return detail::batch_norm_impl(x, weight, bias, running_mean, running_var, options,
                                 /*relu=*/false, "batch_norm");
}

}  // namespace nextvit::ops
