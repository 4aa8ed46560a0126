#pragma once
// Checks shared by the ops in autograd/ops/: every op names itself in its error messages.
#include <initializer_list>

#include "autograd/variable.h"

namespace nextvit::ops {

// Throws unless v is defined and f32; returns its data made contiguous.
inline Tensor f32_input(const Variable& v, const char* op, const char* name) {
  NV_CHECK(v.defined(), "{}: input '{}' is undefined", op, name);
  NV_CHECK(v.data().dtype() == DType::F32, "{}: input '{}' must be f32, got {}", op, name,
           dtype_name(v.data().dtype()));
  return v.data().contiguous();
}

// Throws unless all defined inputs share one device; returns it.
inline Device common_device(std::initializer_list<const Variable*> vs, const char* op) {
  Device d;
  bool first = true;
  for (const Variable* v : vs) {
    if (!v->defined()) continue;
    if (first) {
      d = v->device();
      first = false;
    }
    NV_CHECK(v->device() == d, "{}: inputs are on different devices ({} and {})", op, d.str(),
             v->device().str());
  }
  return d;
}

// Whether an op on these inputs records a backward: gradients are enabled and a defined input
// requires one. Inference-only kernels (fused passes, other layouts) run only when it does not.
inline bool records_gradient(std::initializer_list<const Variable*> inputs) {
  if (!grad_enabled()) return false;
  for (const Variable* v : inputs) {
    if (v->defined() && v->requires_grad()) return true;
  }
  return false;
}

// A fresh f32 tensor shaped like `shape` on `device`.
inline Tensor new_f32(const Shape& shape, Device device) {
  return Tensor::empty(shape, DType::F32, device);
}

// The f32 data of an optional tensor (a bias, a workspace, a gradient not asked for): nullptr
// when it is undefined, which the kernels read as "absent".
inline float* f32_or_null(const Tensor& t) {
  return t.defined() ? t.data<float>() : nullptr;
}

}  // namespace nextvit::ops
