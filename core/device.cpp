#include "core/device.h"

#include "core/cuda_runtime.h"
#include "core/error.h"

namespace nextvit {

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  if (name == "cuda") return Device::cuda(0);
  if (name.rfind("cuda:", 0) == 0) {
    std::string idx = name.substr(5);
    NV_CHECK(!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos,
             "bad device '{}': expected cpu, cuda or cuda:N", name);
    return Device::cuda(std::stoi(idx));
  }
  NV_FAIL("bad device '{}': expected cpu, cuda or cuda:N", name);
}

bool cuda_available() {
  return cuda_rt::available();
}

}  // namespace nextvit
