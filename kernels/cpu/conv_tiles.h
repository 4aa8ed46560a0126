#pragma once
// What the CPU's direct and Winograd convolutions share (kernels/cpu/conv_direct.cpp,
// kernels/cpu/conv_winograd.cpp): per-thread scratch, the blocking of an image's rows into
// items, the split of a row into even and odd columns, and the register tiles, a small matrix
// product whose right-hand rows are runs of one
// buffer at offsets from a table,
//
//   c[r][q] = sum_k a[r * lda + k] * x[off[k] + q]
//
// for R rows and V vectors of consecutive q, summed from 0 in the order k = 0, 1, ... with one
// fused multiply-add per step on both families (so both give the same bits). The direct
// convolution's off[k] are the padded input's offsets of kernel tap k; the Winograd one's the
// rows of one transformed-input plane.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/gemm.h"
#if NEXTVIT_CPU_X86
#include <immintrin.h>
#endif

// Whether AddressSanitizer instruments this build (GCC defines __SANITIZE_ADDRESS__, clang
// answers __has_feature).
#if defined(__SANITIZE_ADDRESS__)
#define NEXTVIT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NEXTVIT_ASAN 1
#endif
#endif
#ifndef NEXTVIT_ASAN
#define NEXTVIT_ASAN 0
#endif

namespace nextvit::kernels::cpu::conv_tiles {

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Per-thread scratch, grown on demand and kept from call to call (slots 0-4; what each holds is
// the calling kernel's business: the two never run inside each other). Under AddressSanitizer a
// request of another size gets a buffer of exactly that size, so that a kernel's read or write
// past what it asked for is reported rather than landing in the room an earlier, larger call
// left (tests/fuzz/fuzz_conv_winograd.cpp relies on it).
inline float* scratch(int slot, int64_t floats) {
  thread_local std::vector<float> buffers[5];
  std::vector<float>& b = buffers[slot];
#if NEXTVIT_ASAN
  if (static_cast<int64_t>(b.size()) != floats) b = std::vector<float>(static_cast<size_t>(floats));
#else
  if (static_cast<int64_t>(b.size()) < floats) b.resize(static_cast<size_t>(floats));
#endif
  return b.data();
}

// Rows per item when `outer` (images x groups) times an image's `rows` rows of `row_positions`
// positions each are cut into items of whole rows: about `item_positions` positions per item,
// at least four items per thread when the image allows, and, with several threads, a number of
// items that divides evenly.
inline int64_t rows_per_item(int64_t rows, int64_t row_positions, int64_t item_positions,
                             int64_t outer, int threads) {
  int64_t nb =
      std::max(ceil_div(rows * row_positions, item_positions), ceil_div(4 * threads, outer));
  nb = std::min(nb, rows);
  const auto blocks_of = [&](int64_t b) { return ceil_div(rows, ceil_div(rows, b)); };
  for (int64_t b = nb; threads > 1 && b <= std::min(rows, 2 * nb); ++b) {
    if (outer * blocks_of(b) % threads == 0) {
      nb = b;
      break;
    }
  }
  return ceil_div(rows, nb);
}

// out[r][v * lanes + lane] = sum_k a[r * lda + k] * x[off[k] + v * lanes + lane], r < R,
// v < V; written whole (c has room for every lane).
using TileFn = void (*)(int64_t kg, const float* a, int64_t lda, const float* x, const int32_t* off,
                        float* c, int64_t ldc);

#if NEXTVIT_CPU_X86
// AVX-512: 8 channels x V vectors of 16 positions (24 accumulators at V = 3, + 3 loads + 1
// broadcast of the 32 registers).
template <int V>
__attribute__((target("avx512f"))) inline void tile_avx512(int64_t kg, const float* a, int64_t lda,
                                                           const float* x, const int32_t* off,
                                                           float* c, int64_t ldc) {
  constexpr int R = 8;
  __m512 acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < kg; ++k) {
    const float* b = x + off[k];
    __m512 bv[V];
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * lda + k]);
#pragma GCC unroll 3
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
  }
}

// AVX2: 4 channels x V vectors of 8 positions (12 accumulators at V = 3, + 3 loads + 1
// broadcast: all 16 registers).
template <int V>
inline void tile_avx2(int64_t kg, const float* a, int64_t lda, const float* x, const int32_t* off,
                      float* c, int64_t ldc) {
  constexpr int R = 4;
  __m256 acc[R][V];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) acc[r][v] = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kg; ++k) {
    const float* b = x + off[k];
    __m256 bv[V];
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * lda + k);
#pragma GCC unroll 3
      for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(c + r * ldc + 8 * v, acc[r][v]);
  }
}
#endif

// A family of tiles: R rows, `lanes` positions per vector, tiles[v - 1] of v vectors.
struct Family {
  int64_t rows, lanes;
  TileFn tiles[3];
};
constexpr int64_t kMaxV = 3;

// The family of the current GEMM ISA, or null (portable: no tiles).
inline const Family* family() {
#if NEXTVIT_CPU_X86
  static const Family avx512{8, 16, {tile_avx512<1>, tile_avx512<2>, tile_avx512<3>}};
  static const Family avx2{4, 8, {tile_avx2<1>, tile_avx2<2>, tile_avx2<3>}};
  return x86_form(avx512, avx2);
#else
  return nullptr;
#endif
}

// The n floats of src, whose first lands in padded column pc0, into phase rows e0 (even
// columns) and e1 (odd): element pc at (pc % 2 ? e1 : e0)[pc / 2]. Plain loops over pairs, which
// the compiler turns into vector loads and shuffles (AVX2; AVX-512 has split_row2_avx512).
inline void split_row2(const float* src, int64_t n, int64_t pc0, float* e0, float* e1) {
  if (n > 0 && pc0 % 2 == 1) {  // an odd first column: one element, then even-aligned pairs
    e1[pc0 / 2] = src[0];
    ++src, --n, ++pc0;
  }
  float* even = e0 + pc0 / 2;
  float* odd = e1 + pc0 / 2;
  const int64_t pairs = n / 2;
  for (int64_t k = 0; k < pairs; ++k) {
    even[k] = src[2 * k];
    odd[k] = src[2 * k + 1];
  }
  if (n % 2 == 1) even[pairs] = src[n - 1];
}

#if NEXTVIT_CPU_X86
// split_row2 with AVX-512, 32 floats at a time: two loads, two permutes that gather the even and
// the odd offsets, two stores.
__attribute__((target("avx512f"))) inline void split_row2_avx512(const float* src, int64_t n,
                                                                 int64_t pc0, float* e0,
                                                                 float* e1) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t t = 0; t < n; t += 32) {
    const int64_t m = std::min<int64_t>(32, n - t), pc = pc0 + t;
    const __mmask16 lo = __mmask16(m >= 16 ? 0xFFFF : (1u << m) - 1);
    const __mmask16 hi = __mmask16(m > 16 ? (1u << (m - 16)) - 1 : 0);
    const __m512 a = _mm512_maskz_loadu_ps(lo, src + t),
                 b = _mm512_maskz_loadu_ps(hi, src + t + 16);
    // Offsets 2u land in column pc + 2u, offsets 2u + 1 in pc + 2u + 1.
    float* ev = (pc % 2 ? e1 : e0) + pc / 2;
    float* od = (pc % 2 ? e0 : e1) + (pc + 1) / 2;
    _mm512_mask_storeu_ps(ev, __mmask16((1u << ((m + 1) / 2)) - 1),
                          _mm512_permutex2var_ps(a, even, b));
    _mm512_mask_storeu_ps(od, __mmask16((1u << (m / 2)) - 1), _mm512_permutex2var_ps(a, odd, b));
  }
}
#endif

// split_row2 in the family's best form (AVX-512 permutes when its vectors are 16 lanes).
inline void split_row2_for(const Family& f, const float* src, int64_t n, int64_t pc0, float* e0,
                           float* e1) {
#if NEXTVIT_CPU_X86
  if (f.lanes == 16) {
    split_row2_avx512(src, n, pc0, e0, e1);
    return;
  }
#endif
  (void)f;
  split_row2(src, n, pc0, e0, e1);
}

}  // namespace nextvit::kernels::cpu::conv_tiles
