#pragma once
// Turning CUDA status codes into nextvit::Error (cuBLAS's and cuDNN's: kernels/cuda/
// library_handles.h). Every call into the runtime goes through one of these macros, with a
// description of what was being done (the op and its shapes), so a failure reads "conv2d (8, 96,
// 56, 56): CUDA error 2 (out of memory) in cudaMalloc" rather than a bare code.
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

#define NV_CUDA_CHECK(expr, ...)                                                     \
  do {                                                                               \
    cudaError_t nv_err_ = (expr);                                                    \
    if (nv_err_ != cudaSuccess) {                                                    \
      (void)cudaGetLastError(); /* clear the sticky error for non-fatal failures */  \
      throw ::nextvit::Error(::fmt::format("{}: CUDA error {} ({}) in {}",           \
                                           ::fmt::format(__VA_ARGS__), int(nv_err_), \
                                           cudaGetErrorString(nv_err_), #expr));     \
    }                                                                                \
  } while (0)

namespace nextvit::cuda_rt {
cudaStream_t current_stream();  // core/cuda/stream.h
// NEXTVIT_CUDA_SYNC=1 in the environment: every launch is followed by a synchronisation, so a
// kernel that faults is reported at its own launch site (with the op and shapes) instead of at
// some later call. Slow; for debugging.
bool sync_after_launch();
// cudaStreamSynchronize, counted: every wait of the host for the device goes through here, so
// host_synchronizations() (core/cuda_runtime.h) tells a test how many a piece of work made.
cudaError_t counted_stream_synchronize(cudaStream_t stream);
}  // namespace nextvit::cuda_rt

// After a kernel launch: catches bad launch configurations at the launch site, and with
// NEXTVIT_CUDA_SYNC=1 the kernel's own faults too.
#define NV_CUDA_CHECK_LAUNCH(...)                                                               \
  do {                                                                                          \
    NV_CUDA_CHECK(cudaGetLastError(), __VA_ARGS__);                                             \
    if (::nextvit::cuda_rt::sync_after_launch()) {                                              \
      NV_CUDA_CHECK(                                                                            \
          ::nextvit::cuda_rt::counted_stream_synchronize(::nextvit::cuda_rt::current_stream()), \
          "{} (NEXTVIT_CUDA_SYNC: the kernel itself failed)", ::fmt::format(__VA_ARGS__));      \
    }                                                                                           \
  } while (0)
