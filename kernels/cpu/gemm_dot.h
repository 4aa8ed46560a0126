#pragma once
// Dot-product micro-kernels for products with few columns (kernels/cpu/gemm_dot_path.cpp
// runs them): a 1x1 convolution on a 7 x 7 map is W (Cout, Cin) x X (Cin, 49). With K >= 128,
// N = 48 and 49 go to the 48-column kernels instead (gemm_cols48.h: why there; gemm_cols16.h on
// AVX2); these serve other narrow products.
//
// Why. The blocked kernels put the N columns of C in vector lanes and broadcast rows of A. With
// N = 49, the 32-wide tiles run 64 lanes for 49 columns (77%), and the weights (A) are packed
// on every call although each element serves only 49 multiply-adds. Here the lanes run along K
// instead: row i of A and row j of op(B)^T are both contiguous in k, so
//
//   acc[r][c] (one vector) += A[i + r, k : k + L] * Bt[j + c, k : k + L]      (L lanes)
//
// and C[i + r, j + c] is the sum of acc[r][c]'s lanes at the end. A is read where it lies (no
// packing, no transpose); op(B)^T is the caller's B when it is transposed, else a copy made once
// per call (N x K floats, small by construction). No lane is wasted on a narrow C; the cost is
// one horizontal sum per element of C, about 2 shuffles per K / L multiply-adds.
//
// A kernel computes C[0:ROWS, 0:COLS] = alpha * sums + beta * C (C not read when beta == 0), with
// the tail of K (K % L) done by masked loads of both operands, so nothing past column K of a row
// is read. Meanwhile it prefetches into L2 the pf_lines cache lines from pf on (one per 16 steps
// of k, at most K / 16 of them): the caller's way to bring the next block of A from memory while
// this one computes (kernels/cpu/gemm_dot_path.cpp, NextRowsPrefetch). Registers: AVX-512 3 x 7
// tile = 21 accumulators + 3 rows of A + 1 of Bt (of 32); AVX2 3 x 4 = 12 + 3 + 1 (of 16).
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <utility>

#include "kernels/cpu/isa.h"

#if !NEXTVIT_CPU_X86
#error "the dot-product micro-kernels are x86-64 only"
#endif

namespace nextvit::kernels::cpu::micro {

using DotKernel = void (*)(int64_t K, const float* a, int64_t lda, const float* bt, int64_t ldbt,
                           float* c, int64_t ldc, float alpha, float beta, const float* pf,
                           int64_t pf_lines);

constexpr int kDotRows512 = 3, kDotCols512 = 7;
constexpr int kDotRows256 = 3, kDotCols256 = 4;

// ---- AVX-512 ----------------------------------------------------------------------------------

// GCC 12's AVX-512 shuffle intrinsics start from _mm512_undefined_ps(), which -Wuninitialized
// reports once inlined (GCC bug 105593, fixed in GCC 13): silenced for the AVX-512 kernels.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // a GCC-only warning group; clang would warn about the pragma itself
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// Lanes 0..7 of the result hold the lane sums of v[0..7] (absent vectors count as zero). A tree
// of shuffles: pairs of vectors fold their 512-bit halves together, then quads their 128-bit
// quarters, then the 4 floats left per vector meet inside 128-bit lanes (16 shuffles in all).
template <int COLS>
__attribute__((target("avx512f"), always_inline)) inline __m512 lane_sums8(
    const __m512 (&v)[COLS]) {
  static_assert(COLS >= 1 && COLS <= 8);
  __m512 x[8];
#pragma GCC unroll 8
  for (int c = 0; c < 8; ++c) x[c] = c < COLS ? v[c] : _mm512_setzero_ps();
  __m512 p[4], q[2];
  for (int i = 0; i < 4; ++i) {  // p[i] quarters 0,1: vector 2i (8 partials); 2,3: vector 2i+1
    p[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], 0xEE));
  }
  for (int i = 0; i < 2; ++i) {  // q[i] quarter t: vector 4i + t (4 partials)
    q[i] = _mm512_add_ps(_mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0xDD));
  }
  // Quarter t: [q0 t0 + q0 t2, q1 t0 + q1 t2, q0 t1 + q0 t3, q1 t1 + q1 t3], then its halves
  // added: float 4t = sum of vector t, float 4t + 1 = sum of vector 4 + t.
  __m512 s = _mm512_add_ps(_mm512_unpacklo_ps(q[0], q[1]), _mm512_unpackhi_ps(q[0], q[1]));
  s = _mm512_add_ps(s, _mm512_permute_ps(s, 0x4E));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0),
                               s);
}

// One step of the k loop: 16 values of k from each operand row (lanes outside m read as zero)
// multiplied into the tile. Inlined, so acc stays in registers.
template <int ROWS, int COLS>
__attribute__((target("avx512f"), always_inline)) inline void dot_step512(
    __m512 (&acc)[ROWS][COLS], const float* a, int64_t lda, const float* bt, int64_t ldbt,
    __mmask16 m) {
  __m512 av[ROWS];
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) av[r] = _mm512_maskz_loadu_ps(m, a + r * lda);
#pragma GCC unroll 8
  for (int q = 0; q < COLS; ++q) {
    const __m512 bv = _mm512_maskz_loadu_ps(m, bt + q * ldbt);
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) acc[r][q] = _mm512_fmadd_ps(av[r], bv, acc[r][q]);
  }
}

template <int ROWS, int COLS>
__attribute__((target("avx512f"))) void dot_kernel_avx512(int64_t K, const float* a, int64_t lda,
                                                          const float* bt, int64_t ldbt, float* c,
                                                          int64_t ldc, float alpha, float beta,
                                                          const float* pf, int64_t pf_lines) {
  __m512 acc[ROWS][COLS];
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < COLS; ++q) acc[r][q] = _mm512_setzero_ps();
  int64_t k = 0;
#pragma GCC unroll 2
  for (; k + 16 <= K; k += 16) {
    if (k < pf_lines * 16) _mm_prefetch(reinterpret_cast<const char*>(pf + k), _MM_HINT_T1);
    dot_step512<ROWS, COLS>(acc, a + k, lda, bt + k, ldbt, 0xFFFF);
  }
  if (k < K) {
    dot_step512<ROWS, COLS>(acc, a + k, lda, bt + k, ldbt, __mmask16((1u << (K - k)) - 1));
  }
  const __mmask16 cols = __mmask16((1u << COLS) - 1);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) {
    __m512 s = _mm512_mul_ps(va, lane_sums8<COLS>(acc[r]));
    if (beta != 0.0f) s = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(cols, c + r * ldc), s);
    _mm512_mask_storeu_ps(c + r * ldc, cols, s);
  }
}

#pragma GCC diagnostic pop

// ---- AVX2 + FMA -------------------------------------------------------------------------------

// Lanes 0..3 of the result hold the lane sums of v[0..3] (absent vectors count as zero).
template <int COLS>
__attribute__((always_inline)) inline __m128 lane_sums4(const __m256 (&v)[COLS]) {
  static_assert(COLS >= 1 && COLS <= 4);
  __m256 x[4];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) x[c] = c < COLS ? v[c] : _mm256_setzero_ps();
  // hadd pairs neighbours inside 128-bit halves: after two rounds, half h of s holds
  // [x0, x1, x2, x3] partial sums of half h; the two halves are then added.
  const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(x[0], x[1]), _mm256_hadd_ps(x[2], x[3]));
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// Lane masks for _mm256_maskload: kDotMask + 8 - n holds n leading -1 lanes.
alignas(32) constexpr int kDotMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

template <int ROWS, int COLS>
void dot_kernel_avx2(int64_t K, const float* a, int64_t lda, const float* bt, int64_t ldbt,
                     float* c, int64_t ldc, float alpha, float beta, const float* pf,
                     int64_t pf_lines) {
  __m256 acc[ROWS][COLS];
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < COLS; ++q) acc[r][q] = _mm256_setzero_ps();
  int64_t k = 0;
#pragma GCC unroll 2
  for (; k + 8 <= K; k += 8) {
    if (k < pf_lines * 16 && k % 16 == 0) {
      _mm_prefetch(reinterpret_cast<const char*>(pf + k), _MM_HINT_T1);
    }
    __m256 av[ROWS];
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) av[r] = _mm256_loadu_ps(a + r * lda + k);
#pragma GCC unroll 8
    for (int q = 0; q < COLS; ++q) {
      const __m256 bv = _mm256_loadu_ps(bt + q * ldbt + k);
#pragma GCC unroll 8
      for (int r = 0; r < ROWS; ++r) acc[r][q] = _mm256_fmadd_ps(av[r], bv, acc[r][q]);
    }
  }
  if (k < K) {
    const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kDotMask + 8 - (K - k)));
    __m256 av[ROWS];
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) av[r] = _mm256_maskload_ps(a + r * lda + k, m);
#pragma GCC unroll 8
    for (int q = 0; q < COLS; ++q) {
      const __m256 bv = _mm256_maskload_ps(bt + q * ldbt + k, m);
#pragma GCC unroll 8
      for (int r = 0; r < ROWS; ++r) acc[r][q] = _mm256_fmadd_ps(av[r], bv, acc[r][q]);
    }
  }
  const __m128i cols = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kDotMask + 8 - COLS));
  const __m128 va = _mm_set1_ps(alpha), vb = _mm_set1_ps(beta);
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) {
    __m128 s = _mm_mul_ps(va, lane_sums4<COLS>(acc[r]));
    if (beta != 0.0f) s = _mm_fmadd_ps(vb, _mm_maskload_ps(c + r * ldc, cols), s);
    _mm_maskstore_ps(c + r * ldc, cols, s);
  }
}

// ---- tables: kernels[rows - 1][cols - 1] --------------------------------------------------------

template <int COLS>
using DotRow = std::array<DotKernel, COLS>;

template <int ROWS, int... C>
constexpr DotRow<sizeof...(C)> dot_row_512(std::integer_sequence<int, C...>) {
  return {&dot_kernel_avx512<ROWS, C + 1>...};
}
template <int ROWS, int... C>
constexpr DotRow<sizeof...(C)> dot_row_256(std::integer_sequence<int, C...>) {
  return {&dot_kernel_avx2<ROWS, C + 1>...};
}
template <int... R>
constexpr std::array<DotRow<kDotCols512>, sizeof...(R)> dot_table_512(
    std::integer_sequence<int, R...>) {
  return {dot_row_512<R + 1>(std::make_integer_sequence<int, kDotCols512>{})...};
}
template <int... R>
constexpr std::array<DotRow<kDotCols256>, sizeof...(R)> dot_table_256(
    std::integer_sequence<int, R...>) {
  return {dot_row_256<R + 1>(std::make_integer_sequence<int, kDotCols256>{})...};
}
constexpr auto kDotKernels512 = dot_table_512(std::make_integer_sequence<int, kDotRows512>{});
constexpr auto kDotKernels256 = dot_table_256(std::make_integer_sequence<int, kDotRows256>{});

}  // namespace nextvit::kernels::cpu::micro
