// cuBLAS SGEMM under the emulator, with cuBLAS's documented behaviour: column-major operands,
// op(X) = X or X^T, the argument checks and their status (a leading dimension smaller than the
// stored rows is CUBLAS_STATUS_INVALID_VALUE), the quick returns (m or n zero: nothing; k zero
// or alpha zero: C = beta C; beta zero: C is written without being read, so NaN garbage in it
// does not propagate). Each operand's span must lie inside one device allocation, or the call
// faults as the real kernel would with an illegal address. The product is a reference loop
// accumulating in double.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/cuda/emulator/state.h"

struct cublasContext {
  int device = 0;  // current at cublasCreate: the handle works on this device's memory only
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};
struct cublasLtContext {};

namespace nvemu {
namespace {

bool valid_op(cublasOperation_t op) {
  return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

// Elements spanned by a column-major rows x cols matrix with leading dimension ld.
size_t span(int rows, int cols, int ld) {
  return rows == 0 || cols == 0 ? 0 : size_t(ld) * size_t(cols - 1) + size_t(rows);
}

bool inside_device_memory(const float* p, size_t elems, const char* what, int batch, int device) {
  if (elems == 0) return true;
  const std::string operand =
      std::string("cublasSgemm: operand ") + what + " of batch " + std::to_string(batch);
  const Allocation* a = find_allocation(p, elems * sizeof(float));
  if (a == nullptr) {
    fault(cudaErrorIllegalAddress, operand + " (" + std::to_string(elems) +
                                       " floats from its pointer and leading dimension) is not "
                                       "inside one device allocation");
    return false;
  }
  if (std::string bad = foreign_memory({a}, device); !bad.empty()) {
    fault(cudaErrorIllegalAddress, operand + " (a handle of device " + std::to_string(device) +
                                       ", made by cublasCreate there) " + bad);
    return false;
  }
  return true;
}

struct Gemm {
  cublasOperation_t ta, tb;
  int m, n, k;
  float alpha, beta;
  int lda, ldb, ldc;
};

void gemm_one(const Gemm& g, const float* A, const float* B, float* C) {
  std::vector<double> col(size_t(g.m));
  for (int j = 0; j < g.n; ++j) {
    std::fill(col.begin(), col.end(), 0.0);
    if (g.alpha != 0.0f) {
      for (int l = 0; l < g.k; ++l) {
        const double b = g.tb == CUBLAS_OP_N ? B[l + size_t(j) * g.ldb] : B[j + size_t(l) * g.ldb];
        for (int i = 0; i < g.m; ++i) {
          const double a =
              g.ta == CUBLAS_OP_N ? A[i + size_t(l) * g.lda] : A[l + size_t(i) * g.lda];
          col[size_t(i)] += a * b;
        }
      }
    }
    for (int i = 0; i < g.m; ++i) {
      float& c = C[i + size_t(j) * g.ldc];
      const double ab = g.alpha * col[size_t(i)];
      c = g.beta == 0.0f ? float(ab) : float(ab + double(g.beta) * c);
    }
  }
}

cublasStatus_t gemm_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const float* alpha, const float* A, int lda, long long sa,
                            const float* B, int ldb, long long sb, const float* beta, float* C,
                            int ldc, long long sc, int batch) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (m < 0 || n < 0 || k < 0 || batch < 0 || !valid_op(ta) || !valid_op(tb)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
  const int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
  if (lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) || ldc < std::max(1, m)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  if (alpha == nullptr || beta == nullptr || C == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  const bool multiply = k > 0 && *alpha != 0.0f;
  if (multiply && (A == nullptr || B == nullptr)) return CUBLAS_STATUS_INVALID_VALUE;
  if (sticky_error() != cudaSuccess || !valid_stream(h->stream)) {
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  const Gemm g{ta, tb, m, n, multiply ? k : 0, multiply ? *alpha : 0.0f, *beta, lda, ldb, ldc};
  for (int i = 0; i < batch; ++i) {
    const int d = h->device;
    if ((multiply && (!inside_device_memory(A + i * sa, span(a_rows, a_cols, lda), "A", i, d) ||
                      !inside_device_memory(B + i * sb, span(b_rows, b_cols, ldb), "B", i, d))) ||
        !inside_device_memory(C + i * sc, span(m, n, ldc), "C", i, d)) {
      return CUBLAS_STATUS_EXECUTION_FAILED;
    }
  }
  // Now, or at each launch of the graph when the handle's stream is capturing (alpha and beta
  // are read now, as cuBLAS reads host scalars at the call).
  const cudaError_t e = enqueue(h->stream, "cublasSgemm", [=] {
    for (int i = 0; i < batch; ++i) {
      gemm_one(g, multiply ? A + i * sa : nullptr, multiply ? B + i * sb : nullptr, C + i * sc);
    }
  });
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // namespace
}  // namespace nvemu

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext();
  (*handle)->device = nvemu::current_device();
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (stream == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int base = int(mode) & ~int(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  if (base < 0 || base > int(CUBLAS_TF32_TENSOR_OP_MATH)) return CUBLAS_STATUS_INVALID_VALUE;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "an invalid value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "the GPU program failed to execute";
    default:
      return "cuBLAS error";
  }
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float* alpha,
                           const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  return nvemu::gemm_batched(handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C,
                             ldc, 0, 1);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float* alpha, const float* A, int lda,
                                         long long stride_a, const float* B, int ldb,
                                         long long stride_b, const float* beta, float* C, int ldc,
                                         long long stride_c, int batch_count) {
  return nvemu::gemm_batched(handle, transa, transb, m, n, k, alpha, A, lda, stride_a, B, ldb,
                             stride_b, beta, C, ldc, stride_c, batch_count);
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasLtContext();
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
