// The no-tape list functions of autograd/tensor_ops.h: check the lists, gather each tensor's
// data pointer and size into host arrays, and hand them to the multi-tensor kernel of the
// lists' device (kernels/optim.h) in one call.
#include "autograd/tensor_ops.h"

#include <cmath>
#include <initializer_list>

#include "kernels/dispatch.h"
#include "kernels/elementwise.h"

namespace nextvit::ops {
namespace {

// The pointers and sizes of a call: sizes[k] and ptr[j][k] (list j, tensor k).
struct Lists {
  Device device;
  std::vector<int64_t> sizes;
  std::vector<std::vector<float*>> ptr;
};

// Checks lists of one call (names for messages) and collects their pointers. An empty list in
// `lists` other than the first stands for "absent" when `optional` says so: its pointers are null.
Lists gather(const char* fn, std::initializer_list<std::pair<const char*, const TensorList*>> lists,
             std::initializer_list<bool> optional = {}) {
  Lists out;
  const TensorList& first = *lists.begin()->second;
  const size_t count = first.size();
  out.sizes.resize(count);
  size_t j = 0;
  for (const auto& [name, list] : lists) {
    const bool absent_ok = j < optional.size() && optional.begin()[j];
    ++j;
    std::vector<float*> ptrs(count, nullptr);
    if (list->empty() && absent_ok) {
      out.ptr.push_back(std::move(ptrs));
      continue;
    }
    NV_CHECK(list->size() == count, "{}: {} holds {} tensors, {} holds {}", fn, name, list->size(),
             lists.begin()->first, count);
    for (size_t k = 0; k < count; ++k) {
      const Tensor& t = (*list)[k];
      NV_CHECK(t.defined(), "{}: {}[{}] is undefined", fn, name, k);
      NV_CHECK(t.dtype() == DType::F32 && t.is_contiguous(),
               "{}: {}[{}] is {} {}; expected contiguous f32", fn, name, k, dtype_name(t.dtype()),
               t.str());
      if (&first == list && k == 0) out.device = t.device();
      NV_CHECK(t.device() == out.device, "{}: {}[{}] is on {}, {}[0] on {}", fn, name, k,
               t.device().str(), lists.begin()->first, out.device.str());
      if (&first == list) out.sizes[k] = t.numel();
      NV_CHECK(t.numel() == out.sizes[k], "{}: {}[{}] has {} elements, {}[{}] has {}", fn, name, k,
               t.numel(), lists.begin()->first, k, out.sizes[k]);
      ptrs[k] = t.data<float>();
    }
    out.ptr.push_back(std::move(ptrs));
  }
  return out;
}

template <typename T>
void check_hyper(const char* fn, const std::vector<T>& hyper, size_t count) {
  NV_CHECK(hyper.size() == count, "{}: {} hyper-parameter sets for {} tensors", fn, hyper.size(),
           count);
}

std::vector<const float*> as_const(const std::vector<float*>& v) {
  return std::vector<const float*>(v.begin(), v.end());
}

}  // namespace

void sgd_step_(const TensorList& params, const TensorList& grads,
               const TensorList& momentum_buffers, const std::vector<kernels::SgdHyper>& hyper) {
  Lists l =
      gather("sgd_step_",
             {{"params", &params}, {"grads", &grads}, {"momentum_buffers", &momentum_buffers}},
             {false, false, true});
  check_hyper("sgd_step_", hyper, params.size());
  for (size_t k = 0; k < hyper.size(); ++k) {
    NV_CHECK(hyper[k].momentum == 0.0f || l.ptr[2][k] != nullptr,
             "sgd_step_: tensor {} has momentum {} but no momentum buffer", k, hyper[k].momentum);
  }
  if (params.empty()) return;
  const auto g = as_const(l.ptr[1]);
  NV_DISPATCH(l.device, sgd_step, int64_t(params.size()), l.sizes.data(), hyper.data(),
              l.ptr[0].data(), g.data(), l.ptr[2].data());
}

void adamw_step_(const TensorList& params, const TensorList& grads, const TensorList& exp_avgs,
                 const TensorList& exp_avg_sqs, const std::vector<kernels::AdamWHyper>& hyper) {
  Lists l = gather("adamw_step_", {{"params", &params},
                                   {"grads", &grads},
                                   {"exp_avgs", &exp_avgs},
                                   {"exp_avg_sqs", &exp_avg_sqs}});
  check_hyper("adamw_step_", hyper, params.size());
  if (params.empty()) return;
  const auto g = as_const(l.ptr[1]);
  NV_DISPATCH(l.device, adamw_step, int64_t(params.size()), l.sizes.data(), hyper.data(),
              l.ptr[0].data(), g.data(), l.ptr[2].data(), l.ptr[3].data());
}

void ema_update_(const TensorList& ema, const TensorList& values, float decay,
                 float one_minus_decay) {
  Lists l = gather("ema_update_", {{"ema", &ema}, {"values", &values}});
  if (ema.empty()) return;
  const auto v = as_const(l.ptr[1]);
  NV_DISPATCH(l.device, ema_update, int64_t(ema.size()), l.sizes.data(), decay, one_minus_decay,
              v.data(), l.ptr[0].data());
}

namespace {
Tensor norm_of(const char* fn, const TensorList& xs, float max_norm) {
  NV_CHECK(!xs.empty(), "{}: the list is empty", fn);
  Lists l = gather(fn, {{"xs", &xs}});
  Tensor norm = Tensor::empty({}, DType::F32, l.device);
  Tensor coef = max_norm > 0.0f ? Tensor::empty({}, DType::F32, l.device) : Tensor();
  NV_DISPATCH(l.device, global_norm, int64_t(xs.size()), l.sizes.data(), l.ptr[0].data(), max_norm,
              norm.data<float>(), coef.defined() ? coef.data<float>() : nullptr);
  return norm;
}
}  // namespace

Tensor global_norm(const TensorList& xs) {
  return norm_of("global_norm", xs, 0.0f);
}

Tensor clip_norm_(const TensorList& xs, float max_norm) {
  NV_CHECK(max_norm > 0.0f && std::isfinite(max_norm),
           "clip_norm_: max_norm must be finite and > 0, got {}", max_norm);
  return norm_of("clip_norm_", xs, max_norm);
}

void scale_(const Tensor& x, float s) {
  NV_CHECK(x.defined() && x.dtype() == DType::F32 && x.is_contiguous(),
           "scale_: expected a contiguous f32 tensor, got {}", x.defined() ? x.str() : "undefined");
  NV_DISPATCH(x.device(), scale, x.numel(), s, x.data<float>(), x.data<float>());
}

}  // namespace nextvit::ops
