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
    // The CUDA backend drives one GPU (device 0: one stream, one allocator, one set of library
    // handles). Anything else is refused rather than silently run on device 0.
    NV_CHECK(std::stoi(idx) == 0,
             "device '{}': this build runs on one GPU, cuda:0 (select another with "
             "CUDA_VISIBLE_DEVICES)",
             name);
    return Device::cuda(0);
  }
  NV_FAIL("bad device '{}': expected cpu, cuda or cuda:N", name);
}

bool cuda_available() {
  return cuda_rt::available();
}

}  // namespace nextvit
