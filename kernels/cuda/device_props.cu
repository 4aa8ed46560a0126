// Reads each device's properties once, at its first use (the current device's are asked for).
#include "kernels/cuda/device_props.h"

#include "core/cuda/per_device.h"
#include "kernels/cuda/launch.cuh"

namespace nextvit::kernels::cuda {
namespace {

struct Props {
  int sms = 0, smem_optin = 0;
};

const Props& props() {
  static auto* props = new cuda_rt::PerDevice<Props>([](Props& r) {
    const int dev = cuda_rt::current_device();
    NV_CUDA_CHECK(cudaDeviceGetAttribute(&r.sms, cudaDevAttrMultiProcessorCount, dev),
                  "reading the multiprocessor count of device {}", dev);
    NV_CUDA_CHECK(
        cudaDeviceGetAttribute(&r.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
        "reading the shared memory limit of device {}", dev);
  });
  return props->current();
}

}  // namespace

int multiprocessor_count() {
  return props().sms;
}
int max_shared_bytes_per_block() {
  return props().smem_optin;
}

namespace {
int g_grid_yz_limit = 65535;
}
int grid_yz_limit() {
  return g_grid_yz_limit;
}
void set_grid_yz_limit_for_testing(int limit) {
  g_grid_yz_limit = limit > 0 && limit < 65535 ? limit : 65535;
}

}  // namespace nextvit::kernels::cuda
