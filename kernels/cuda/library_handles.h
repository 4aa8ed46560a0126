#pragma once
// The math libraries' handles, in one place: cuBLAS and cuBLASLt (gemm.cu) and, in builds with
// cuDNN (NEXTVIT_WITH_CUDNN), cuDNN (conv2d_cudnn.cu and the benchmarks that compare against
// it). Each device has its own, created on its first use there and bound to its stream
// (cuda_rt::current_stream(), so library calls are ordered with our kernels and captured with
// them into a CUDA graph); the functions return the current device's. Each lives as long as the
// process: destroying it from a static destructor could run after the CUDA
// runtime has shut down. cuBLAS runs in exact fp32 (CUBLAS_DEFAULT_MATH, no TF32), so CPU and
// GPU results agree to fp32 rounding. NV_CUBLAS_CHECK / NV_CUDNN_CHECK turn a library status
// into a nextvit::Error naming what was being done.
#include <cublasLt.h>
#include <cublas_v2.h>
#ifdef NEXTVIT_WITH_CUDNN
#include <cudnn.h>
#endif

#include "core/error.h"

namespace nextvit::kernels::cuda {

cublasHandle_t cublas_handle();
cublasLtHandle_t cublaslt_handle();
const char* cublas_status_name(cublasStatus_t s);
#ifdef NEXTVIT_WITH_CUDNN
cudnnHandle_t cudnn_handle();
#endif

}  // namespace nextvit::kernels::cuda

#define NV_CUBLAS_CHECK(expr, ...)                                                     \
  do {                                                                                 \
    cublasStatus_t nv_st_ = (expr);                                                    \
    if (nv_st_ != CUBLAS_STATUS_SUCCESS) {                                             \
      throw ::nextvit::Error(                                                          \
          ::fmt::format("{}: cuBLAS error {} in {}", ::fmt::format(__VA_ARGS__),       \
                        ::nextvit::kernels::cuda::cublas_status_name(nv_st_), #expr)); \
    }                                                                                  \
  } while (0)

#ifdef NEXTVIT_WITH_CUDNN
#define NV_CUDNN_CHECK(expr, ...)                                                   \
  do {                                                                              \
    cudnnStatus_t nv_st_ = (expr);                                                  \
    if (nv_st_ != CUDNN_STATUS_SUCCESS) {                                           \
      throw ::nextvit::Error(::fmt::format("{}: cuDNN error {} ({}) in {}",         \
                                           ::fmt::format(__VA_ARGS__), int(nv_st_), \
                                           cudnnGetErrorString(nv_st_), #expr));    \
    }                                                                               \
  } while (0)
#endif  // NEXTVIT_WITH_CUDNN
