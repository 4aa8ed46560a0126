// GEMM on the GPU through cuBLAS. cuBLAS is column-major; a row-major matrix read as
// column-major is its transpose, so the row-major product C = op(A) op(B) is computed as the
// column-major product C^T = op(B)^T op(A)^T: swap the operands and the M/N sizes, keep each
// operand's transpose flag. Exact fp32 (no TF32): the handle's math mode is CUBLAS_DEFAULT_MATH
// (library_handles.h).
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/library_handles.h"
#include "kernels/gemm.h"

namespace nextvit::kernels::cuda {

namespace {
cublasOperation_t op(bool transpose) {
  return transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
}

// cuBLAS takes int sizes: a larger one is refused by name rather than silently truncated.
int checked_int(int64_t v, const char* what, int64_t M, int64_t N, int64_t K) {
  NV_CHECK(v >= 0 && v <= 0x7fffffff, "gemm M={} N={} K={}: {} = {} exceeds cuBLAS's 32-bit sizes",
           M, N, K, what, v);
  return static_cast<int>(v);
}
}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const int m = checked_int(M, "M", M, N, K), n = checked_int(N, "N", M, N, K),
            k = checked_int(K, "K", M, N, K);
  NV_CUBLAS_CHECK(cublasSgemm(cublas_handle(), op(trans_b), op(trans_a), n, m, k, &alpha, B,
                              checked_int(ldb, "ldb", M, N, K), A, checked_int(lda, "lda", M, N, K),
                              &beta, C, checked_int(ldc, "ldc", M, N, K)),
                  "gemm M={} N={} K={}", M, N, K);
}

void gemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, int64_t stride_a, const float* B,
                          int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
                          int64_t stride_c, int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  const int m = checked_int(M, "M", M, N, K), n = checked_int(N, "N", M, N, K),
            k = checked_int(K, "K", M, N, K);
  NV_CUBLAS_CHECK(cublasSgemmStridedBatched(cublas_handle(), op(trans_b), op(trans_a), n, m, k,
                                            &alpha, B, checked_int(ldb, "ldb", M, N, K), stride_b,
                                            A, checked_int(lda, "lda", M, N, K), stride_a, &beta, C,
                                            checked_int(ldc, "ldc", M, N, K), stride_c,
                                            checked_int(batch, "batch", M, N, K)),
                  "batched gemm {} x (M={} N={} K={})", batch, M, N, K);
}

}  // namespace nextvit::kernels::cuda
