#pragma once
// The portable GEMM micro-kernel: an 8 x 12 tile written with GCC/Clang vector extensions
// (4-float vectors), so the compiler maps it to whatever the target has: on aarch64, NEON with
// 24 q-register accumulators + 3 for the B row + 1 broadcast (28 of the 32 registers) and one
// fused multiply-add per vector; on x86-64-v3 the same code becomes 128-bit AVX, which is how CI
// runs it natively (NEXTVIT_CPU_ISA=portable) besides under qemu-aarch64.
// Included by kernels/cpu/gemm_blocked_path.cpp only; the contract is in gemm_micro_kernel.h.
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kernels/cpu/gemm_micro_kernel.h"

namespace nextvit::kernels::cpu::micro {

constexpr int kMrPortable = 8, kNrPortable = 12;

typedef float Float4 __attribute__((vector_size(16)));
constexpr int kVectorsPortable = kNrPortable / 4;

// A row of B as kNrPortable / 4 vectors. An edge tile of a direct B (n < NR) must not read past
// column n: its row goes through a zero-padded copy.
template <bool kDirectB>
inline void load_b_row(const float* b, int n, Float4 (&v)[kVectorsPortable]) {
  if (kDirectB && n < kNrPortable) {
    float padded[kNrPortable] = {};
    std::memcpy(padded, b, sizeof(float) * n);
    std::memcpy(v, padded, sizeof(padded));
  } else {
    std::memcpy(v, b, sizeof(float) * kNrPortable);
  }
}

template <int ROWS, bool kDirectB>
void micro_kernel_portable(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                           int64_t ldc, int n, float alpha, float beta) {
  Float4 acc[ROWS][kVectorsPortable] = {};
  for (int64_t k = 0; k < kc; ++k) {
    Float4 bv[kVectorsPortable];
    load_b_row<kDirectB>(b, n, bv);
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
      const Float4 av = Float4{} + a[r];  // broadcast
#pragma GCC unroll 3
      for (int v = 0; v < kVectorsPortable; ++v) acc[r][v] += av * bv[v];
    }
    a += kMrPortable;
    b += ldb;
  }
  for (int r = 0; r < ROWS; ++r) {
    float tile[kNrPortable];
    std::memcpy(tile, acc[r], sizeof(tile));
    float* cr = c + r * ldc;
    if (beta == 0.0f) {
      for (int q = 0; q < n; ++q) cr[q] = alpha * tile[q];
    } else {
      for (int q = 0; q < n; ++q) cr[q] = alpha * tile[q] + beta * cr[q];
    }
  }
}

// kernels[direct][rows - 1] for rows = 1 .. MR.
template <int... R>
constexpr std::array<std::array<MicroKernel, sizeof...(R)>, 2> portable_table(
    std::integer_sequence<int, R...>) {
  return {{{&micro_kernel_portable<R + 1, false>...}, {&micro_kernel_portable<R + 1, true>...}}};
}
constexpr auto kKernelsPortable = portable_table(std::make_integer_sequence<int, kMrPortable>{});

}  // namespace nextvit::kernels::cpu::micro
