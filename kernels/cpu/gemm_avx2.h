#pragma once
// The AVX2 + FMA GEMM micro-kernel: a 6 x 16 tile (12 ymm accumulators of the 16 registers).
// Included by kernels/cpu/gemm_blocked_path.cpp only; the contract is in gemm_micro_kernel.h.
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

constexpr int kMr256 = 6, kNr256 = 16;

// Lane masks for _mm256_maskload/maskstore: kLaneMask + 8 - n holds n leading -1 lanes.
alignas(32) constexpr int kLaneMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

template <int ROWS, bool kDirectB>
void micro_kernel_avx2(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                       int64_t ldc, int n, float alpha, float beta) {
  const __m256i m0 =
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLaneMask + 8 - std::min(n, 8)));
  const __m256i m1 = _mm256_loadu_si256(
      reinterpret_cast<const __m256i*>(kLaneMask + 8 - std::max(0, std::min(n - 8, 8))));
  __m256 acc[ROWS][2];
#pragma GCC unroll 6
  for (int r = 0; r < ROWS; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m256 b0, b1;
    if constexpr (kDirectB) {
      b0 = _mm256_maskload_ps(b, m0);
      b1 = _mm256_maskload_ps(b + 8, m1);
      _mm_prefetch(reinterpret_cast<const char*>(b + kNr256), _MM_HINT_T0);
    } else {
      b0 = _mm256_load_ps(b);
      b1 = _mm256_load_ps(b + 8);
    }
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
    a += kMr256;
    b += ldb;
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
  for (int r = 0; r < ROWS; ++r) {
    float* cr = c + r * ldc;
    __m256 v0 = acc[r][0], v1 = acc[r][1];
    if (alpha != 1.0f) v0 = _mm256_mul_ps(v0, va), v1 = _mm256_mul_ps(v1, va);  // as AVX-512
    if (n == kNr256) {
      if (beta != 0.0f) {
        v0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), v0);
        v1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), v1);
      }
      _mm256_storeu_ps(cr, v0);
      _mm256_storeu_ps(cr + 8, v1);
    } else {
      if (beta != 0.0f) {
        v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, m0), v0);
        v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, m1), v1);
      }
      _mm256_maskstore_ps(cr, m0, v0);
      _mm256_maskstore_ps(cr + 8, m1, v1);
    }
  }
}

// kernels[direct][rows - 1] for rows = 1 .. MR.
template <int... R>
constexpr std::array<std::array<MicroKernel, sizeof...(R)>, 2> avx2_table(
    std::integer_sequence<int, R...>) {
  return {{{&micro_kernel_avx2<R + 1, false>...}, {&micro_kernel_avx2<R + 1, true>...}}};
}
constexpr auto kKernels256 = avx2_table(std::make_integer_sequence<int, kMr256>{});

}  // namespace nextvit::kernels::cpu::micro
