#pragma once
// The AVX-512 GEMM micro-kernels: a 14 x 32 tile (28 zmm accumulators + 2 for B + 1 broadcast
// of the 32 registers), and the row-gathering variant behind gemm_rows_b (implicit-GEMM
// convolution). They carry __attribute__((target("avx512f"))) because the project compiles for
// x86-64-v3; the GEMM calls them only when the CPU has AVX-512F.
// Included by the GEMM's paths only (kernels/cpu/gemm_blocked_path.cpp, and gemm.cpp for
// gemm_rows_b); the contract is in gemm_micro_kernel.h.
#include "kernels/cpu/gemm_micro_kernel.h"

#if !NEXTVIT_CPU_X86
#error "this micro-kernel family is x86-64 only"
#endif

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

namespace nextvit::kernels::cpu::micro {

constexpr int kMr512 = 14, kNr512 = 32;

// Column masks of a tile n columns wide, for lanes 0-15 (m0) and 16-31 (m1): masked lanes are
// neither read nor written.
inline void tile_masks(int n, __mmask16& m0, __mmask16& m1) {
  m0 = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  m1 = n >= 32 ? __mmask16(0xFFFF) : n > 16 ? __mmask16((1u << (n - 16)) - 1) : __mmask16(0);
}

// The step of the k loop both kernels share: acc[r] += a[r] * (b0, b1), a rank-1 update of
// the tile. Inlined, so acc stays in registers.
template <int ROWS>
__attribute__((target("avx512f"), always_inline)) inline void rank1_update(__m512 (&acc)[ROWS][2],
                                                                           const float* a,
                                                                           __m512 b0, __m512 b1) {
#pragma GCC unroll 14
  for (int r = 0; r < ROWS; ++r) {
    const __m512 av = _mm512_set1_ps(a[r]);
    acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
    acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
  }
}

// The epilogue both kernels share, once per tile: C = alpha * acc + beta * C over the tile's
// ROWS rows and masked columns (C is not read when beta is 0, nor multiplied by alpha when alpha
// is 1: at K = 27, the stem's im2col chunk, those multiplies were 1 in 28 of the tile's FMA-port
// instructions, and skipping them took 0.97x the time). Inlined, so acc stays in registers.
template <int ROWS>
__attribute__((target("avx512f"), always_inline)) inline void store_tile(
    const __m512 (&acc)[ROWS][2], __mmask16 m0, __mmask16 m1, float* c, int64_t ldc, float alpha,
    float beta) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
  for (int r = 0; r < ROWS; ++r) {
    float* cr = c + r * ldc;
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (alpha != 1.0f) v0 = _mm512_mul_ps(v0, va), v1 = _mm512_mul_ps(v1, va);
    if (beta != 0.0f) {
      v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
      v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

template <int ROWS, bool kDirectB>
__attribute__((target("avx512f"))) void micro_kernel_avx512(int64_t kc, const float* a,
                                                            const float* b, int64_t ldb, float* c,
                                                            int64_t ldc, int n, float alpha,
                                                            float beta) {
  __mmask16 m0, m1;
  tile_masks(n, m0, m1);
  __m512 acc[ROWS][2];
#pragma GCC unroll 14
  for (int r = 0; r < ROWS; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    // Ask for the C tile now so that its lines arrive while the k loop runs.
#pragma GCC unroll 14
  for (int r = 0; r < ROWS; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + kNr512 - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b0, b1;
    if constexpr (kDirectB) {
      b0 = _mm512_maskz_loadu_ps(m0, b);
      b1 = _mm512_maskz_loadu_ps(m1, b + 16);
      // The next tile to the right reads the next 32 floats of this row: fetch them now, as
      // the prefetcher cannot follow kc interleaved rows.
      _mm_prefetch(reinterpret_cast<const char*>(b + kNr512), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b + kNr512 + 16), _MM_HINT_T0);
    } else {
      b0 = _mm512_load_ps(b);
      b1 = _mm512_load_ps(b + 16);
    }
    rank1_update<ROWS>(acc, a, b0, b1);
    a += kMr512;
    b += ldb;
  }
  store_tile<ROWS>(acc, m0, m1, c, ldc, alpha, beta);
}

// kernels[direct][rows - 1] for rows = 1 .. MR.
template <int... R>
constexpr std::array<std::array<MicroKernel, sizeof...(R)>, 2> avx512_table(
    std::integer_sequence<int, R...>) {
  return {{{&micro_kernel_avx512<R + 1, false>...}, {&micro_kernel_avx512<R + 1, true>...}}};
}
constexpr auto kKernels512 = avx512_table(std::make_integer_sequence<int, kMr512>{});

// The row-gathering variant behind gemm_rows_b: row k of B is rows[k][0..32), lane q taken only
// where bit q of masks[k] is set (0 elsewhere, the memory not touched). Otherwise as above.
template <int ROWS>
__attribute__((target("avx512f"))) void rows_kernel_avx512(int64_t kc, const float* a,
                                                           const float* const* rows,
                                                           const uint32_t* masks, float* c,
                                                           int64_t ldc, int n, float alpha,
                                                           float beta) {
  __mmask16 m0, m1;
  tile_masks(n, m0, m1);
  __m512 acc[ROWS][2];
#pragma GCC unroll 14
  for (int r = 0; r < ROWS; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = rows[k];
    const uint32_t m = masks[k];
    const __m512 b0 = _mm512_maskz_loadu_ps(__mmask16(m & 0xFFFF), b);
    const __m512 b1 = _mm512_maskz_loadu_ps(__mmask16(m >> 16), b + 16);
    rank1_update<ROWS>(acc, a, b0, b1);
    a += kMr512;
  }
  store_tile<ROWS>(acc, m0, m1, c, ldc, alpha, beta);
}

using RowsKernel = void (*)(int64_t, const float*, const float* const*, const uint32_t*, float*,
                            int64_t, int, float, float);
template <int... R>
constexpr std::array<RowsKernel, sizeof...(R)> rows_table(std::integer_sequence<int, R...>) {
  return {&rows_kernel_avx512<R + 1>...};
}
constexpr auto kRowsKernels = rows_table(std::make_integer_sequence<int, kMr512>{});

}  // namespace nextvit::kernels::cpu::micro
