#pragma once
// One T per CUDA device (a stream, an error record, library handles...), made on that device's
// first use by `init`, run with the device current (CUDA objects belong to the device current
// at their creation). Never destroyed: work may still reach them during static destruction.
#include <array>
#include <functional>
#include <mutex>

#include "core/cuda_runtime.h"
#include "core/device_guard.h"
#include "core/error.h"

namespace nextvit::cuda_rt {

template <typename T>
class PerDevice {
 public:
  explicit PerDevice(std::function<void(T&)> init) : init_(std::move(init)) {}

  T& get(int device) {
    NV_CHECK(device >= 0 && device < kMaxDevices, "CUDA device {} is out of range (0 to {})",
             device, kMaxDevices - 1);
    std::call_once(once_[device], [&] {
      DeviceGuard guard(Device::cuda(device));
      init_(items_[device]);
    });
    return items_[device];
  }
  T& current() { return get(current_device()); }

 private:
  std::function<void(T&)> init_;
  std::array<T, kMaxDevices> items_{};
  std::array<std::once_flag, kMaxDevices> once_;
};

}  // namespace nextvit::cuda_rt
