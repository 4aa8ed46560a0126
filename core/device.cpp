#include "core/device.h"

#include "core/cuda_runtime.h"
#include "core/error.h"

namespace nextvit {

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  if (name == "cuda") return Device::cuda(0);
  if (name.rfind("cuda:", 0) == 0) {
    std::string idx = name.substr(5);
    NV_CHECK(
        !idx.empty() && idx.size() <= 4 && idx.find_first_not_of("0123456789") == std::string::npos,
        "bad device '{}': expected cpu, cuda or cuda:N", name);
    // cuda:0 is accepted as "cuda" is (a build or machine without CUDA says so at first use);
    // another index must name a device that is present.
    const int index = std::stoi(idx);
    if (index == 0) return Device::cuda(0);
    const int count = cuda_rt::device_count();
#ifdef NEXTVIT_WITH_CUDA
    NV_CHECK(count > 0, "device '{}': no CUDA device is present", name);
#else
    NV_CHECK(count > 0, "device '{}': nextvit was built without CUDA", name);
#endif
    NV_CHECK(index < count, "device '{}': there {} {} CUDA device{} (cuda:0{})", name,
             count == 1 ? "is" : "are", count, count == 1 ? "" : "s",
             count == 1 ? "" : fmt::format(" to cuda:{}", count - 1));
    NV_CHECK(index < cuda_rt::kMaxDevices, "device '{}': nextvit uses at most {} devices", name,
             cuda_rt::kMaxDevices);
    return Device::cuda(index);
  }
  NV_FAIL("bad device '{}': expected cpu, cuda or cuda:N", name);
}

bool cuda_available() {
  return cuda_rt::available();
}

}  // namespace nextvit
