#pragma once
// The process's cuDNN handle (bound to cuda_rt::current_stream()) and the status check, for
// the cuDNN convolution path (conv2d_cudnn.cu) and the benchmarks that compare against cuDNN.
// Only in builds with cuDNN (NEXTVIT_WITH_CUDNN).
#ifdef NEXTVIT_WITH_CUDNN
#include <cudnn.h>

#include "core/error.h"

namespace nextvit::kernels::cuda {

cudnnHandle_t cudnn_handle();

}  // namespace nextvit::kernels::cuda

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
