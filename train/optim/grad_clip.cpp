#include "train/optim/grad_clip.h"

#include <cmath>
#include <utility>

#include "kernels/dispatch.h"
#include "kernels/elementwise.h"
#include "kernels/optim.h"

namespace nextvit {

float grad_norm(const std::vector<Variable>& params) {
  // One accumulator per device: the kernel adds each gradient's sum of squares into it, so a
  // GPU pays a single device-to-host copy per device, not one per parameter.
  std::vector<std::pair<Device, Tensor>> totals;
  for (const Variable& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    const Tensor g = p.grad().contiguous();
    NV_CHECK(g.dtype() == DType::F32, "grad_norm: a gradient of shape {} is {}, expected f32",
             shape_str(g.shape()), dtype_name(g.dtype()));
    Tensor* total = nullptr;
    for (auto& [device, t] : totals) {
      if (device == g.device()) total = &t;
    }
    if (total == nullptr) {
      totals.emplace_back(g.device(), Tensor::zeros({}, DType::F32, g.device()));
      total = &totals.back().second;
    }
    NV_DISPATCH(g.device(), sum_squares, g.numel(), g.data<float>(), total->data<float>());
  }
  double sum = 0.0;
  for (const auto& [device, t] : totals) sum += t.item();
  return static_cast<float>(std::sqrt(sum));
}

float clip_grad_norm(const std::vector<Variable>& params, float max_norm) {
  NV_CHECK(max_norm > 0.0f && std::isfinite(max_norm),
           "clip_grad_norm: max_norm must be finite and > 0, got {}", max_norm);
  const float norm = grad_norm(params);
  // torch's float arithmetic: clip_coef = max_norm / (norm + 1e-6), clamped to at most 1.
  const float coef = max_norm / (norm + 1e-6f);
  if (coef < 1.0f || std::isnan(coef)) {
    for (const Variable& p : params) {
      if (!p.defined() || !p.grad().defined()) continue;
      // Autograd's gradients are owned contiguous accumulators and are scaled in place; one
      // set from outside as a strided view is replaced by a scaled contiguous copy.
      Tensor g = p.grad();
      if (!g.is_contiguous()) g = g.contiguous();
      NV_DISPATCH(g.device(), scale, g.numel(), coef, g.data<float>(), g.data<float>());
      if (!g.shares_storage(p.grad())) p.set_grad(g);
    }
  }
  return norm;
}

Tensor clip_grad_norm_on_device(const std::vector<Variable>& params, float max_norm) {
  NV_CHECK(max_norm > 0.0f && std::isfinite(max_norm),
           "clip_grad_norm: max_norm must be finite and > 0, got {}", max_norm);
  std::vector<Variable> with_grad;
  for (const Variable& p : params) {
    if (p.defined() && p.grad().defined()) with_grad.push_back(p);
  }
  if (with_grad.empty()) return Tensor::zeros({}, DType::F32);
  const Device dev = with_grad.front().grad().device();
  Tensor total = Tensor::zeros({}, DType::F32, dev);
  for (const Variable& p : with_grad) {
    const Tensor g = p.grad().contiguous();
    NV_CHECK(g.dtype() == DType::F32 && g.device() == dev,
             "clip_grad_norm: a gradient of shape {} is {} on {}, expected f32 on {}",
             shape_str(g.shape()), dtype_name(g.dtype()), g.device().str(), dev.str());
    NV_DISPATCH(dev, sum_squares, g.numel(), g.data<float>(), total.data<float>());
  }
  Tensor norm = Tensor::empty({}, DType::F32, dev), coef = Tensor::empty({}, DType::F32, dev);
  NV_DISPATCH(dev, clip_coefficient, total.data<float>(), max_norm, norm.data<float>(),
              coef.data<float>());
  for (const Variable& p : with_grad) {
    Tensor g = p.grad();
    if (!g.is_contiguous()) g = g.contiguous();
    NV_DISPATCH(dev, clip_scale, g.numel(), coef.data<float>(), g.data<float>());
    if (!g.shares_storage(p.grad())) p.set_grad(g);
  }
  return norm;
}

void check_grad_norm_finite(float norm, int64_t step) {
  NV_CHECK(std::isfinite(norm),
           "training diverged: the gradient norm is {} at step {} (lower the learning rate, "
           "enable gradient clipping or check the data)",
           norm, step);
}

}  // namespace nextvit
