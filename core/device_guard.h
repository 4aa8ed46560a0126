#pragma once
// Runs a scope on one CUDA device, like c10::cuda::CUDAGuard: makes the tensor's device the
// calling thread's current device (where kernels, allocations, the stream and the library
// handles go: core/cuda_runtime.h) and restores the previous one at the end. Op dispatch
// (kernels/dispatch.h) opens one for its tensors' device, so an op on cuda:N runs on device N
// whatever the thread's device was. A CPU device changes nothing; so does the device that is
// already current (no CUDA call but the query), and so does a build or machine without a CUDA
// device (nothing to select: the op itself then says that the device is missing).
#include "core/cuda_runtime.h"
#include "core/device.h"

namespace nextvit {

class DeviceGuard {
 public:
  explicit DeviceGuard(Device device) {
    if (!device.is_cuda() || !cuda_rt::available()) return;
    const int current = cuda_rt::current_device();
    if (current == device.index) return;
    cuda_rt::set_device(device.index);
    previous_ = current;
  }
  ~DeviceGuard() {
    if (previous_ < 0) return;
    try {
      cuda_rt::set_device(previous_);  // was current a moment ago: cannot fail in practice
    } catch (...) {
    }
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;  // the device to restore, or -1 when nothing changed
};

}  // namespace nextvit
