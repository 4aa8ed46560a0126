// GEMM on the GPU through cuBLAS. cuBLAS is column-major; a row-major matrix read as
// column-major is its transpose, so the row-major product C = op(A) op(B) is computed as the
// column-major product C^T = op(B)^T op(A)^T: swap the operands and the M/N sizes, keep each
// operand's transpose flag. Exact fp32 (no TF32): the handle's math mode is CUBLAS_DEFAULT_MATH.
#include "kernels/cuda/launch.cuh"
#include "kernels/gemm.h"

namespace nextvit::kernels::cuda {

namespace {
cublasOperation_t op(bool transpose) {
  return transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
}
}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  NV_CUBLAS_CHECK(cublasSgemm(cuda_rt::cublas_handle(), op(trans_b), op(trans_a), int(N), int(M),
                              int(K), &alpha, B, int(ldb), A, int(lda), &beta, C, int(ldc)),
                  "gemm M={} N={} K={}", M, N, K);
}

void gemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, int64_t stride_a, const float* B,
                          int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
                          int64_t stride_c, int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  NV_CUBLAS_CHECK(
      cublasSgemmStridedBatched(cuda_rt::cublas_handle(), op(trans_b), op(trans_a), int(N), int(M),
                                int(K), &alpha, B, int(ldb), stride_b, A, int(lda), stride_a, &beta,
                                C, int(ldc), stride_c, int(batch)),
      "batched gemm {} x (M={} N={} K={})", batch, M, N, K);
}

}  // namespace nextvit::kernels::cuda
