// The cuDNN handle: created on first use, bound to the process's one stream, never destroyed
// (it lives as long as the process; destroying it from a static destructor could run after
// the CUDA runtime has shut down).
#ifdef NEXTVIT_WITH_CUDNN
#include <mutex>

#include "kernels/cuda/cudnn_util.h"
#include "kernels/cuda/launch.cuh"

namespace nextvit::kernels::cuda {

cudnnHandle_t cudnn_handle() {
  static cudnnHandle_t handle = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    NV_CUDNN_CHECK(cudnnCreate(&handle), "creating the cuDNN handle");
    NV_CUDNN_CHECK(cudnnSetStream(handle, stream()), "binding cuDNN to the stream");
  });
  return handle;
}

}  // namespace nextvit::kernels::cuda
#endif  // NEXTVIT_WITH_CUDNN
