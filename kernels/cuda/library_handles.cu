// The cuBLAS, cuBLASLt and cuDNN handles (kernels/cuda/library_handles.h).
#include "kernels/cuda/library_handles.h"

#include "core/cuda/per_device.h"
#include "kernels/cuda/launch.cuh"

namespace nextvit::kernels::cuda {

namespace {

struct BlasHandles {
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
};

// The current device's handles (a handle works on the device current at its creation).
BlasHandles& blas_handles() {
  static auto* handles = new cuda_rt::PerDevice<BlasHandles>([](BlasHandles& h) {
    NV_CUBLAS_CHECK(cublasCreate(&h.cublas), "creating the cuBLAS handle");
    NV_CUBLAS_CHECK(cublasSetStream(h.cublas, stream()), "binding cuBLAS to the stream");
    NV_CUBLAS_CHECK(cublasSetMathMode(h.cublas, CUBLAS_DEFAULT_MATH), "setting cuBLAS math mode");
    NV_CUBLAS_CHECK(cublasLtCreate(&h.cublaslt), "creating the cuBLASLt handle");
  });
  return handles->current();
}

}  // namespace

cublasHandle_t cublas_handle() {
  return blas_handles().cublas;
}

cublasLtHandle_t cublaslt_handle() {
  return blas_handles().cublaslt;
}

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "ALLOC_FAILED (out of memory)";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "NOT_SUPPORTED";
    default:
      return "UNKNOWN";
  }
}

#ifdef NEXTVIT_WITH_CUDNN
cudnnHandle_t cudnn_handle() {
  static auto* handles = new cuda_rt::PerDevice<cudnnHandle_t>([](cudnnHandle_t& handle) {
    NV_CUDNN_CHECK(cudnnCreate(&handle), "creating the cuDNN handle");
    NV_CUDNN_CHECK(cudnnSetStream(handle, stream()), "binding cuDNN to the stream");
  });
  return handles->current();
}
#endif

}  // namespace nextvit::kernels::cuda
