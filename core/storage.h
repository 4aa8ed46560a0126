#pragma once
// Storage: one contiguous block of bytes on one device, owned by reference count. Tensors are
// views (shape, strides, offset) into a storage; several tensors may share one.
#include <cstddef>
#include <memory>

#include "core/allocator.h"
#include "core/device.h"

namespace nextvit {

class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
};

}  // namespace nextvit
