#pragma once
// Single-precision matrix products on row-major buffers (the BLAS sgemm contract, row-major):
//
//   C = alpha * op(A) op(B) + beta * C,   op(A) is (M, K), op(B) is (K, N), C is (M, N)
//
// trans_a == false: A is (M, K), element (i, k) at A[i * lda + k], lda >= K.
// trans_a == true:  A is (K, M), element (i, k) of op(A) at A[k * lda + i], lda >= M.
// trans_b == false: B is (K, N), element (k, j) at B[k * ldb + j], ldb >= N.
// trans_b == true:  B is (N, K), element (k, j) of op(B) at B[j * ldb + k], ldb >= K.
// C element (i, j) at C[i * ldc + j], ldc >= N.
//
// beta == 0 overwrites C without reading it (C may hold garbage, even NaN). K == 0 or
// alpha == 0 scales C by beta. M == 0 or N == 0 does nothing. C must not overlap A or B.
//
// The strided-batched form runs `batch` independent products; item b uses A + b * stride_a,
// B + b * stride_b, C + b * stride_c. A stride of 0 shares one matrix between all items (a
// weight applied to every image). C items must not overlap.
#include <cstdint>

namespace nextvit::kernels {

#define NV_GEMM_KERNELS                                                                          \
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,            \
            const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,      \
            int64_t ldc);                                                                        \
  void gemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,         \
                            float alpha, const float* A, int64_t lda, int64_t stride_a,          \
                            const float* B, int64_t ldb, int64_t stride_b, float beta, float* C, \
                            int64_t ldc, int64_t stride_c, int64_t batch);

namespace cpu {
NV_GEMM_KERNELS

// The CPU product is cache-blocked (GotoBLAS/BLIS): panels of op(A) and op(B) are packed into
// aligned buffers and a register-tiled micro-kernel does the multiply-adds. Which micro-kernel
// runs is chosen once at start-up: on x86-64 from the CPU (AVX-512 when present, else AVX2+FMA),
// elsewhere (aarch64) the portable vector-extension kernel. The environment variable
// NEXTVIT_CPU_ISA=avx512|avx2|portable overrides the choice for the whole process (to test or
// measure the AVX2 path on an AVX-512 machine); tests and benchmarks may also force one. Forcing
// AVX-512 on a CPU without it, or an x86 family in a non-x86 build, throws.
enum class GemmIsa { kAuto, kAvx2, kAvx512, kPortable };
// Sets the micro-kernel family used from now on (kAuto: back to the start-up choice); returns
// the one in use before the call.
GemmIsa set_gemm_isa(GemmIsa isa);
// The family the next call will use (never kAuto), and its name ("avx512" / "avx2" /
// "portable").
GemmIsa gemm_isa();
const char* gemm_isa_name(GemmIsa isa);
// Of a kernel's AVX-512 and AVX2 forms, the one for the family in use; nullptr on the portable
// family, where such a kernel has no form (its caller takes the generic path).
template <typename Form>
const Form* x86_form(const Form& avx512, const Form& avx2) {
  switch (gemm_isa()) {
    case GemmIsa::kAvx512:
      return &avx512;
    case GemmIsa::kAvx2:
      return &avx2;
    default:
      return nullptr;
  }
}
// Whether this build has the family and this CPU can run it (kAuto: true).
bool gemm_isa_runs_here(GemmIsa isa);

// A pass over rows of C that the CPU product runs as it finishes them, while they are still in
// cache (a convolution's bias, BatchNorm affine and ReLU: kernels/cpu/conv_output_pass.h),
// instead of a second sweep over all of C, from memory, once the product is done. fn(ctx, i, c,
// n) finishes c[0, n), a run of row i of C, in place. The product hands a row over in pieces, in
// any order and from any of its threads, each element exactly once, after its last K block:
// the pass must treat each element on its own.
struct GemmRowPass {
  void (*fn)(const void* ctx, int64_t row, float* c, int64_t n) = nullptr;
  const void* ctx = nullptr;
};
// A map of each row of B applied as the product reads it: op(B)(k, j) is taken to be
//   B[k * ldb + j] * scale[k] + shift[k]
// (a BatchNorm in eval mode over the input channels of a 1x1 convolution: kernels/conv2d.h,
// Conv2dPrologue). The packers apply it while they copy B's rows, so that the map costs no pass
// of its own, and each value is the float the separate map would have stored. B must not be
// transposed. scale and shift are both null (no map) or both set, indexed by k.
struct GemmRowAffine {
  const float* scale = nullptr;
  const float* shift = nullptr;
  bool on() const { return scale != nullptr; }
};
// B's columns in blocks of `span`, `stride` floats apart: op(B)(k, j) is
//   B[(j / span) * stride + k * ldb + j % span]
// (a convolution's chunk of several small images side by side, each image's channel planes
// read where they lie: kernels/cpu/conv2d.cpp). The packers read the blocks as they copy B, so
// the columns need no gather into a contiguous matrix first. B must not be transposed; span
// >= 1 and ldb >= span (a block's rows do not overlap). span 0: B is the plain matrix.
struct GemmColumnBlocks {
  int64_t span = 0, stride = 0;
  bool on() const { return span > 0; }
};
// gemm, then `pass` over every element of C (over none when M or N is 0); with b_map, op(B) is
// the mapped B; with b_blocks, B's columns lie in those blocks.
void gemm_with_pass(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc, const GemmRowPass& pass, const GemmRowAffine& b_map = {},
                    const GemmColumnBlocks& b_blocks = {});

// K in blocks of `span`: C = alpha * op(A) op(B) + beta * C with B transposed and
//   op(A)(i, k) = A[(k / span) * stride_a + i * lda + k % span]
//   op(B)(k, j) = B[(k / span) * stride_b + j * ldb + k % span]
// (a convolution's weight gradient over a chunk of several small images, dy x^T summed over
// the images, each image's planes read where they lie: kernels/cpu/conv2d.cpp). A plain
// operand is the case stride = span. The packers read the blocks as they copy; blocks of fewer
// than 16 floats, and the operands of a narrow C, are first copied together (in the GEMM's own
// per-thread buffers).
struct GemmKBlocks {
  int64_t span = 0, stride_a = 0, stride_b = 0;
  bool on() const { return span > 0; }
};
void gemm_nt_k_blocks(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                      const GemmKBlocks& blocks);

// The micro-kernel with B given row by row, for implicit-GEMM convolution (kernels/cpu/conv2d):
// there row k of B is a run of input pixels, read where it lies instead of copied by im2col.
//
//   C (M, n) = alpha * A (M, K) B (K, n) + beta * C,   n <= kGemmRowsMaxN
//   B[k][q] = rows[k][q] where bit q of masks[k] is set, else 0 (that memory is not read)
//
// A is first packed once with gemm_rows_b_pack into gemm_rows_b_packed_floats(M, K) floats and
// then serves any number of calls. Single-threaded; AVX-512 only (gemm_rows_b_supported() is
// false under the AVX2 micro-kernels, and gemm_rows_b then throws).
constexpr int64_t kGemmRowsMaxN = 32;
bool gemm_rows_b_supported();
int64_t gemm_rows_b_packed_floats(int64_t M, int64_t K);
void gemm_rows_b_pack(int64_t M, int64_t K, const float* A, int64_t lda, float* packed);
void gemm_rows_b(int64_t M, int64_t K, int64_t n, float alpha, const float* packed,
                 const float* const* rows, const uint32_t* masks, float beta, float* C,
                 int64_t ldc);
}  // namespace cpu

namespace cuda {
NV_GEMM_KERNELS
}  // namespace cuda

#undef NV_GEMM_KERNELS

}  // namespace nextvit::kernels
