#pragma once
// The AVX2 form of the 48-column kernels (gemm_cols48.h says why such products get kernels of
// their own; kernels/cpu/gemm_cols48_path.cpp runs both forms): the same products, a 1x1
// convolution on a 7 x 7 map (48 or 49 columns) or a 14 x 14 one (196), with the rows of W
// broadcast from where they lie and op(B) packed once per product, but in panels of 16 columns,
// two ymm vectors: AVX2's 16 registers hold 6 rows x 2 vectors of accumulators, the two vectors of
// the panel's row of Xp and the broadcast (15), where three vectors a row would leave room for 4
// rows only (4 x 24 ran at 89 % of the FMA peak on a Zen 4 core against 94 % for 6 x 16, the 12
// accumulators hiding the FMA latency of two ports):
//
//   acc[r][v] += W[i + r, k] (broadcast) * Xp[k, 8 v : 8 v + 8]     v = 0, 1
//
// 48 columns are three panels, 49 three and an extra one, 196 twelve and four extra. A panel's
// extra column is summed after its 16 lanes, from the same rows of W (the tile's, in L1 or L2
// by then) and xl, op(B)'s column packed contiguously, 8 steps of k at a time:
//
//   accl[r] += W[i + r, k : k + 8] * xl[k : k + 8]
//
// then one horizontal sum per row: 6 accumulators, 7 vector loads per 6 FMAs, on 1/16 of the
// panel's work. Each element of C is summed in the same order whatever the tile or thread it
// falls in (k ascending; the extra column's 8 lanes, then their sum), so the results do not
// depend on the thread count. They are not the AVX-512 form's bits in the extra column (16 lanes
// there), which no caller asks for: the products whose bits must match across families (the
// attention's, K = 32) do not come here.
//
// The contract is the 48-column kernels' (Cols48Kernel): C[0:ROWS, 0:16] and, when EXTRA, the
// column at cl = alpha * sums + beta * C (C not read when beta is 0, no multiply when alpha is 1)
// over all of K, with the same prefetch of the next tile's rows of W (one line of each per 16
// steps of k).
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <utility>

#include "kernels/cpu/gemm_avx2.h"
#include "kernels/cpu/gemm_cols48.h"
#include "kernels/cpu/isa.h"

#if !NEXTVIT_CPU_X86
#error "the 16-column micro-kernels are x86-64 only"
#endif

namespace nextvit::kernels::cpu::micro {

// One step k of the 16 lane columns: a rank-1 update of the ROWS x 16 tile.
template <int ROWS>
__attribute__((always_inline)) inline void cols16_step(__m256 (&acc)[ROWS][2], const float* a,
                                                       int64_t lda, const float* xp_row) {
  const __m256 b0 = _mm256_load_ps(xp_row), b1 = _mm256_load_ps(xp_row + 8);
#pragma GCC unroll 6
  for (int r = 0; r < ROWS; ++r) {
    const __m256 av = _mm256_broadcast_ss(a + r * lda);
    acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
    acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
  }
}

// The extra column's sums of the tile's rows: 8 lanes of k, a masked tail, one horizontal sum.
template <int ROWS>
__attribute__((always_inline)) inline void cols16_extra(int64_t K, const float* a, int64_t lda,
                                                        const float* xl, float (&sums)[ROWS]) {
  __m256 accl[ROWS];
#pragma GCC unroll 6
  for (int r = 0; r < ROWS; ++r) accl[r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 x = _mm256_loadu_ps(xl + k);
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; ++r) {
      accl[r] = _mm256_fmadd_ps(_mm256_loadu_ps(a + r * lda + k), x, accl[r]);
    }
  }
  if (k < K) {
    const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLaneMask + 8 - (K - k)));
    const __m256 x = _mm256_maskload_ps(xl + k, m);
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; ++r) {
      accl[r] = _mm256_fmadd_ps(_mm256_maskload_ps(a + r * lda + k, m), x, accl[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < ROWS; ++r) {
    __m128 s = _mm_add_ps(_mm256_extractf128_ps(accl[r], 1), _mm256_castps256_ps128(accl[r]));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    sums[r] = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
}

template <int ROWS, int EXTRA>
void cols16_kernel_avx2(int64_t K, const float* a, int64_t lda, const float* xp, const float* xl,
                        float* c, float* cl, int64_t ldc, float alpha, float beta, const float* pf,
                        int pf_rows) {
  static_assert(EXTRA == 0 || EXTRA == 1);
  __m256 acc[ROWS][2];
#pragma GCC unroll 6
  for (int r = 0; r < ROWS; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  int64_t k0 = 0;
  for (; k0 + 16 <= K; k0 += 16) {
    for (int r = 0; r < pf_rows; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(pf + r * lda + k0), _MM_HINT_T1);
    }
#pragma GCC unroll 16
    for (int kk = 0; kk < 16; ++kk) cols16_step<ROWS>(acc, a + k0 + kk, lda, xp + (k0 + kk) * 16);
  }
  for (int64_t k = k0; k < K; ++k) cols16_step<ROWS>(acc, a + k, lda, xp + k * 16);
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
  for (int r = 0; r < ROWS; ++r) {
    float* cr = c + r * ldc;
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) {
      __m256 s = alpha != 1.0f ? _mm256_mul_ps(va, acc[r][v]) : acc[r][v];
      if (beta != 0.0f) s = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8 * v), s);
      _mm256_storeu_ps(cr + 8 * v, s);
    }
  }
  if constexpr (EXTRA == 1) {
    float sums[ROWS];
    cols16_extra<ROWS>(K, a, lda, xl, sums);
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; ++r) store_extra(sums[r], cl + r * ldc, alpha, beta);
  }
}

// ---- table: kCols16Kernels[extra][rows - 1] -----------------------------------------------------

template <int EXTRA, int... R>
constexpr std::array<Cols48Kernel, sizeof...(R)> cols16_row(std::integer_sequence<int, R...>) {
  return {&cols16_kernel_avx2<R + 1, EXTRA>...};
}
constexpr std::array<std::array<Cols48Kernel, kCols48Rows>, 2> kCols16Kernels = {
    cols16_row<0>(std::make_integer_sequence<int, kCols48Rows>{}),
    cols16_row<1>(std::make_integer_sequence<int, kCols48Rows>{})};

}  // namespace nextvit::kernels::cpu::micro
