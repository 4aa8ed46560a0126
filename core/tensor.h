#pragma once
// Tensor: a typed, shaped, strided view into a reference-counted Storage on one device.
//
// A Tensor is a cheap handle (copying it shares the storage, as in PyTorch). Views -- view,
// reshape of a contiguous tensor, transpose, permute, narrow -- share storage and only change
// (shape, strides, offset). Kernels take raw pointers and assume contiguous row-major data, so
// ops call contiguous() first; that is a no-op for a tensor that already is.
//
// A Tensor knows nothing of gradients: autograd/Variable wraps it with that.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace nextvit {

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: defined() is false

  // ---- creation ------------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu());
  // Copies host data into a new CPU tensor; values.size() must equal the shape's element count.
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor from_vector_i64(const std::vector<int64_t>& values, const Shape& shape);
  static Tensor scalar(float value, Device device = Device::cpu());

  // ---- properties ----------------------------------------------------------------------------
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  int64_t offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;
  // True when both tensors view the same storage block.
  bool shares_storage(const Tensor& other) const { return storage_ == other.storage_; }
  // True when no other tensor (view, copy of the handle) refers to this one's storage: writing
  // to it in place then changes nothing anyone else can see.
  bool sole_owner() const { return storage_ != nullptr && storage_.use_count() == 1; }
  std::string str() const;  // "Tensor(f32, cpu, (2, 3))"

  // Pointer to the first element (storage start + offset), on the tensor's device.
  void* raw_data() const;
  // Typed pointer; throws when T does not match the dtype.
  template <typename T>
  T* data() const {
    NV_CHECK(dtype_ == dtype_of<T>::value, "Tensor::data: tensor holds {}, asked for {}",
             dtype_name(dtype_), dtype_name(dtype_of<T>::value));
    return static_cast<T*>(raw_data());
  }

  // ---- views (share storage) -----------------------------------------------------------------
  // view: requires a contiguous tensor; one dimension may be -1 (inferred).
  Tensor view(const Shape& shape) const;
  // reshape: a view when contiguous, otherwise a contiguous copy reshaped.
  Tensor reshape(const Shape& shape) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor unsqueeze(int64_t dim) const;

  // ---- copies --------------------------------------------------------------------------------
  Tensor contiguous() const;       // self if already contiguous
  Tensor clone() const;            // always a new contiguous tensor
  Tensor to(Device device) const;  // self if already there
  Tensor to(DType dtype) const;    // CPU conversions between F32/F16/BF16/I64
  Tensor cpu() const { return to(Device::cpu()); }
  // Copies src (same shape, any device, any strides) into this tensor's elements.
  void copy_(const Tensor& src) const;
  const Tensor& fill_(float value) const;
  const Tensor& zero_() const;

  // ---- host access (copies to the CPU when needed) --------------------------------------------
  std::vector<float> to_vector() const;
  std::vector<int64_t> to_vector_i64() const;
  float item() const;  // a one-element F32 tensor's value

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;  // in elements
  DType dtype_ = DType::F32;
};

// Throws unless the tensor has exactly this shape; `what` names the tensor in the message.
void check_shape(const Tensor& t, const Shape& expected, const char* what);

}  // namespace nextvit
