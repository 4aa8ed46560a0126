#include "train/optim/grad_clip.h"

#include <cmath>
#include <utility>

#include "autograd/tensor_ops.h"

namespace nextvit {

namespace {

// The defined gradients of `params`, f32 and contiguous, batched by device (one batch in
// practice). Autograd's gradients are owned contiguous accumulators, scaled in place; one set
// from outside as a strided view is first replaced by a contiguous copy, so that scaling the
// copy reaches the parameter.
std::vector<std::pair<Device, ops::TensorList>> gradients_by_device(
    const std::vector<Variable>& params, const char* fn) {
  std::vector<std::pair<Device, ops::TensorList>> out;
  for (const Variable& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    Tensor g = p.grad();
    NV_CHECK(g.dtype() == DType::F32, "{}: a gradient of shape {} is {}, expected f32", fn,
             shape_str(g.shape()), dtype_name(g.dtype()));
    if (!g.is_contiguous()) {
      g = g.contiguous();
      p.set_grad(g);
    }
    ops::TensorList* list = nullptr;
    for (auto& [device, l] : out) {
      if (device == g.device()) list = &l;
    }
    if (list == nullptr) list = &out.emplace_back(g.device(), ops::TensorList{}).second;
    list->push_back(g);
  }
  return out;
}

}  // namespace

float grad_norm(const std::vector<Variable>& params) {
  // One tensor-list call per device, so a GPU pays a single device-to-host read per device.
  const auto lists = gradients_by_device(params, "grad_norm");
  if (lists.size() == 1) return ops::global_norm(lists[0].second).item();
  double sum = 0.0;
  for (const auto& [device, l] : lists) {
    const double n = ops::global_norm(l).item();
    sum += n * n;
  }
  return static_cast<float>(std::sqrt(sum));
}

float clip_grad_norm(const std::vector<Variable>& params, float max_norm) {
  NV_CHECK(max_norm > 0.0f && std::isfinite(max_norm),
           "clip_grad_norm: max_norm must be finite and > 0, got {}", max_norm);
  const auto lists = gradients_by_device(params, "clip_grad_norm");
  if (lists.empty()) return 0.0f;
  // All on one device: the device computes norm, coefficient and scaling (one read-back).
  if (lists.size() == 1) return ops::clip_norm_(lists[0].second, max_norm).item();
  const float norm = grad_norm(params);
  // torch's float arithmetic: clip_coef = max_norm / (norm + 1e-6), clamped to at most 1.
  const float coef = max_norm / (norm + 1e-6f);
  if (coef < 1.0f || std::isnan(coef)) {
    for (const auto& [device, l] : lists) {
      for (const Tensor& g : l) ops::scale_(g, coef);
    }
  }
  return norm;
}

Tensor clip_grad_norm_on_device(const std::vector<Variable>& params, float max_norm) {
  NV_CHECK(max_norm > 0.0f && std::isfinite(max_norm),
           "clip_grad_norm: max_norm must be finite and > 0, got {}", max_norm);
  const auto lists = gradients_by_device(params, "clip_grad_norm");
  if (lists.empty()) return Tensor::zeros({}, DType::F32);
  NV_CHECK(lists.size() == 1, "clip_grad_norm: gradients on {} and {}; expected one device",
           lists[0].first.str(), lists[1].first.str());
  return ops::clip_norm_(lists[0].second, max_norm);
}

void check_grad_norm_finite(float norm, int64_t step) {
  NV_CHECK(std::isfinite(norm),
           "training diverged: the gradient norm is {} at step {} (lower the learning rate, "
           "enable gradient clipping or check the data)",
           norm, step);
}

}  // namespace nextvit
