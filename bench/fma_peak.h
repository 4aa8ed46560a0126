#pragma once
// The FP32 peak of this CPU's cores, measured: what bench_gemm states its GFLOP/s against, and
// what bench_cpu_forward states a whole forward's rate against.
//
// peak per core = GHz * FLOPs/cycle, FLOPs/cycle = 2 (multiply + add) * lanes (16 floats per
// AVX-512 register, 8 per AVX2) * vector FMAs the core retires per cycle. Both factors are
// measured, not assumed. GHz: KVM reports the nominal clock in /proc/cpuinfo, the core runs at
// its turbo clock; a chain of dependent FMAs retires one per FMA latency (4 cycles on every Intel
// core since Skylake and on AMD Zen 2-5), so GHz = 4 * FMAs / seconds. FMAs per cycle: twelve
// independent chains (more than latency x units) keep every FMA unit busy, so their FMAs /
// seconds / GHz is the issue rate, rounded to a whole number. It differs by core, not by ISA
// name: a Xeon since Skylake-SP Gold retires two 512-bit FMAs per cycle, AMD Zen 4 one (its
// 512-bit FMA occupies both of its 256-bit units, so AVX-512 and AVX2 have the same peak there),
// a Xeon with one 512-bit unit one.
//
// The clock is the one a core has while it runs FMA chains alone (light load). With both FMA
// units busy in a GEMM a core may run a few per cent slower (2-9 % measured on a Sapphire Rapids
// class Xeon): shares of this peak are, if anything, understated.
//
// x86-64 only (the chains are AVX-512 / AVX2 intrinsics); elsewhere measure_fma_peak returns a
// peak of 0, which callers print as unknown.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace nextvit::bench {

struct FmaPeak {
  int lanes = 0;           // floats per vector register of the measured width (16 or 8)
  double ghz = 0;          // clock while running vector FMAs of that width
  double measured = 0;     // vector FMAs retired per cycle, unrounded
  int fmas_per_cycle = 0;  // ... rounded: the FMA units of that width
  int flops_per_cycle() const { return 2 * lanes * fmas_per_cycle; }
  double gflops_per_core() const { return ghz * flops_per_cycle(); }
  bool known() const { return gflops_per_core() > 0; }
};

#if defined(__x86_64__)
namespace fma_detail {

// n FMAs in `chains` independent chains of n / chains each: with 1 chain each FMA waits for the
// previous one (latency 4 cycles), with 12 the FMA units never wait. Run with the register width
// the GEMM uses, because a core may clock lower while running 512-bit FMAs. Two functions rather
// than one template over the vector type: each needs its own target attribute, and an AVX-512
// one on the 256-bit loop would let the compiler emit code an AVX2-only CPU cannot run.
template <int chains>
__attribute__((target("avx512f"))) float chains_512(int64_t n) {
  __m512 x[chains];
  for (int c = 0; c < chains; ++c) x[c] = _mm512_set1_ps(1.0f + 0.01f * c);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < n / chains; ++i) {
    for (int c = 0; c < chains; ++c) x[c] = _mm512_fmadd_ps(x[c], a, b);
  }
  for (int c = 1; c < chains; ++c) x[0] = _mm512_add_ps(x[0], x[c]);
  alignas(64) float out[16];
  _mm512_store_ps(out, x[0]);
  return out[0];
}

template <int chains>
__attribute__((target("avx2,fma"))) float chains_256(int64_t n) {
  __m256 x[chains];
  for (int c = 0; c < chains; ++c) x[c] = _mm256_set1_ps(1.0f + 0.01f * c);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < n / chains; ++i) {
    for (int c = 0; c < chains; ++c) x[c] = _mm256_fmadd_ps(x[c], a, b);
  }
  for (int c = 1; c < chains; ++c) x[0] = _mm256_add_ps(x[0], x[c]);
  return _mm256_cvtss_f32(x[0]);
}

// Billions of FMAs per second of the fastest of 400 runs of 250 k FMAs (~0.3 ms each, ~0.15 s
// in all). Short runs, because on a shared machine a long one is almost always interrupted by
// another process, which only ever lowers the figure (and would inflate the % of peak); one of
// many short runs runs whole, at the clock the core has while it runs.
inline double fastest_gfmas(float (*run)(int64_t)) {
  constexpr int64_t n = 250'020;  // a multiple of 1 and 12
  double best = 0;
  for (int r = 0; r < 400; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    const float sink = run(n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sink == 12345.0f) std::printf(" ");  // keep the chains alive
    best = std::max(best, double(n) / s / 1e9);
  }
  return best;
}

}  // namespace fma_detail
#endif

// One core's peak for vectors of 512 bits (avx512) or 256 bits, measured on the calling thread.
inline FmaPeak measure_fma_peak(bool avx512) {
  FmaPeak p;
#if defined(__x86_64__)
  using namespace fma_detail;
  p.lanes = avx512 ? 16 : 8;
  p.ghz = 4.0 * fastest_gfmas(avx512 ? chains_512<1> : chains_256<1>);
  p.measured = fastest_gfmas(avx512 ? chains_512<12> : chains_256<12>) / p.ghz;
  p.fmas_per_cycle = std::max(1, int(std::lround(p.measured)));
#else
  (void)avx512;
#endif
  return p;
}

// /proc/cpuinfo's "cpu MHz" (0 if absent), printed beside the measured clock.
inline double cpuinfo_mhz() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu MHz", 0) == 0) return std::atof(line.substr(line.find(':') + 1).c_str());
  }
  return 0;
}

}  // namespace nextvit::bench
