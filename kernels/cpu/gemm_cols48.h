#pragma once
// AVX-512 micro-kernels for products with 48 or 49 columns (kernels/cpu/gemm_cols48_path.cpp runs
// them): a 1x1 convolution on a 7 x 7 map is W (Cout, Cin) x X (Cin, 49), and E-MHSA's keys and
// values are 49 pooled tokens. Wider products run a kernel per 48 columns, each carrying at most
// one extra column: 196 = 4 x (48 + 1) on a 14 x 14 map.
//
// Why not the dot-product kernels (gemm_dot.h), which served these shapes before: they load
// both operands as full vectors, 10 vector loads for 21 multiply-adds of their 3 x 7 tile, and
// on a Sapphire Rapids class core a loop with more than about one 64-byte load per four FMAs
// runs the FMA units at two thirds of their rate (measured: 4.9 against 7.0-7.3 G FMAs per
// second with 1-3 and 4-8 FMAs per load); they also pay a horizontal sum per element of C.
// Here the 48 first columns sit in the vector lanes, as in the blocked kernels, and the rows of
// W are broadcast straight from where they lie (no packing of the weights, which at batch 1 come
// from memory and serve only 49 multiply-adds each):
//
//   acc[r][v] (one vector) += W[i + r, k] (broadcast) * Xp[k, 16 v : 16 v + 16]     v = 0, 1, 2
//
// with Xp the first 48 columns of op(B) packed once per product (K x 48, 64-byte aligned rows).
// The 49th column, if any, is a dot product along k, 16 steps at a time, from the same rows of W
// (already in L1 for the broadcasts) and xl, op(B)'s last column packed contiguously:
//
//   accl[r] += W[i + r, k : k + 16] * xl[k : k + 16]
//
// so per 16 steps of k, for a 6-row tile: 55 vector loads (48 of Xp, 7 for the 49th column), 96
// broadcasts and 16 x 18 + 6 FMAs: more than five FMAs per vector load, every lane useful (49
// columns cost 49 / 48 of 48), and one horizontal sum per row of C. Registers: 6 x 3
// accumulators + 6 for the 49th column + 3 rows of Xp + the broadcast + xl's vector = 29 of 32.
// Each element of C is summed in the same order whatever the tile or thread it falls in (k
// ascending; the 49th column's 16 lanes, then their sum), so the results do not depend on the
// thread count.
//
// A kernel computes C[0:ROWS, 0:48] and, when EXTRA, the column at cl (ldc apart, like c) =
// alpha * sums + beta * C (C not read when beta is 0, no multiply when alpha is 1) over all of K,
// the tail (K % 16) with masked loads for the 49th column and one step at a time for the others.
// Meanwhile it prefetches into L2 the first pf_rows rows of the tile at pf (lda apart, K floats
// each): one line of each per 16 steps of k, the pace at which it reads its own rows, so that the
// tile the caller passes (the same rows of the next block of W) arrives from memory while this one
// computes.
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <utility>

#include "kernels/cpu/isa.h"

#if !NEXTVIT_CPU_X86
#error "the 48-column micro-kernels are x86-64 only"
#endif

namespace nextvit::kernels::cpu::micro {

using Cols48Kernel = void (*)(int64_t K, const float* a, int64_t lda, const float* xp,
                              const float* xl, float* c, float* cl, int64_t ldc, float alpha,
                              float beta, const float* pf, int pf_rows);

constexpr int kCols48Rows = 6;

// GCC 12's _mm512_reduce_add_ps starts from _mm512_undefined_ps(), which -Wuninitialized reports
// once inlined (GCC bug 105593, fixed in GCC 13): silenced for these kernels, as in gemm_dot.h.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // a GCC-only warning group; clang would warn about the pragma itself
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// The extra column's element c = alpha * sum + beta * c with the same two roundings as the vector
// lanes: alpha * sum, then fma(beta, c, that) (c not read when beta is 0). Shared with the AVX2
// form (gemm_cols16.h).
inline void store_extra(float sum, float* c, float alpha, float beta) {
  __m128 s = _mm_set_ss(sum);
  if (alpha != 1.0f) s = _mm_mul_ss(_mm_set_ss(alpha), s);
  if (beta != 0.0f) s = _mm_fmadd_ss(_mm_set_ss(beta), _mm_load_ss(c), s);
  _mm_store_ss(c, s);
}

// One step k of the 48 lane columns: a rank-1 update of the ROWS x 48 tile.
template <int ROWS>
__attribute__((target("avx512f"), always_inline)) inline void cols48_step(__m512 (&acc)[ROWS][3],
                                                                          const float* a,
                                                                          int64_t lda,
                                                                          const float* xp_row) {
  const __m512 b0 = _mm512_load_ps(xp_row), b1 = _mm512_load_ps(xp_row + 16),
               b2 = _mm512_load_ps(xp_row + 32);
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) {
    const __m512 av = _mm512_set1_ps(a[r * lda]);
    acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
    acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);
  }
}

// 16 (or, masked, fewer) steps of the 49th column.
template <int ROWS>
__attribute__((target("avx512f"), always_inline)) inline void cols48_last_step(
    __m512 (&accl)[ROWS], const float* a, int64_t lda, const float* xl, __mmask16 m) {
  const __m512 x = _mm512_maskz_loadu_ps(m, xl);
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) {
    accl[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + r * lda), x, accl[r]);
  }
}

template <int ROWS, int EXTRA>
__attribute__((target("avx512f"))) void cols48_kernel_avx512(int64_t K, const float* a, int64_t lda,
                                                             const float* xp, const float* xl,
                                                             float* c, float* cl, int64_t ldc,
                                                             float alpha, float beta,
                                                             const float* pf, int pf_rows) {
  static_assert(EXTRA == 0 || EXTRA == 1);
  __m512 acc[ROWS][3], accl[ROWS];
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) acc[r][0] = acc[r][1] = acc[r][2] = accl[r] = _mm512_setzero_ps();
  int64_t k0 = 0;
  for (; k0 + 16 <= K; k0 += 16) {
    for (int r = 0; r < pf_rows; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(pf + r * lda + k0), _MM_HINT_T1);
    }
    if constexpr (EXTRA == 1) cols48_last_step<ROWS>(accl, a + k0, lda, xl + k0, 0xFFFF);
#pragma GCC unroll 16
    for (int kk = 0; kk < 16; ++kk) cols48_step<ROWS>(acc, a + k0 + kk, lda, xp + (k0 + kk) * 48);
  }
  if (k0 < K) {
    if constexpr (EXTRA == 1) {
      cols48_last_step<ROWS>(accl, a + k0, lda, xl + k0, __mmask16((1u << (K - k0)) - 1));
    }
    for (int64_t k = k0; k < K; ++k) cols48_step<ROWS>(acc, a + k, lda, xp + k * 48);
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r) {
    float* cr = c + r * ldc;
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) {
      __m512 s = alpha != 1.0f ? _mm512_mul_ps(va, acc[r][v]) : acc[r][v];
      if (beta != 0.0f) s = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16 * v), s);
      _mm512_storeu_ps(cr + 16 * v, s);
    }
    if constexpr (EXTRA == 1) store_extra(_mm512_reduce_add_ps(accl[r]), cl + r * ldc, alpha, beta);
  }
}

#pragma GCC diagnostic pop

// ---- table: kCols48Kernels[extra][rows - 1] -----------------------------------------------------

template <int EXTRA, int... R>
constexpr std::array<Cols48Kernel, sizeof...(R)> cols48_row(std::integer_sequence<int, R...>) {
  return {&cols48_kernel_avx512<R + 1, EXTRA>...};
}
constexpr std::array<std::array<Cols48Kernel, kCols48Rows>, 2> kCols48Kernels = {
    cols48_row<0>(std::make_integer_sequence<int, kCols48Rows>{}),
    cols48_row<1>(std::make_integer_sequence<int, kCols48Rows>{})};

}  // namespace nextvit::kernels::cpu::micro
