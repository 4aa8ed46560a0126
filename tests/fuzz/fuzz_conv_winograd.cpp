// The Winograd convolution (kernels/cpu/conv_winograd.cpp) against the direct kernel or the GEMM
// paths, on shapes drawn from the input: not an input parser but a kernel whose buffers carry
// slack for the vectors that run past a row's end, so that the sanitizers check every edge of
// its blocking (batch 1-2, 1-3 groups, 1-24 input and 8-24 output channels per group, maps of
// 1-30 rows by 12-59 columns, padding 0-2, both ISA families, 1 or 2 threads; small enough for
// many inputs a second). A finding: a
// sanitizer report, a NaN, an output further from the direct kernel's than 1e-5 of the sum of
// its terms' magnitudes (that sum, computed by the direct kernel on |x| and |w|, bounds the
// rounding of either), or different bits on the two families.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/gemm.h"

namespace {

using nextvit::kernels::Conv2dShape;
namespace cpu = nextvit::kernels::cpu;

// n values in [-1, 1) from a seed (a fixed generator: a reproducer replays the same data).
std::vector<float> values(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t s = seed * 2654435761u + 12345u;
  for (float& f : v) {
    s = s * 1664525u + 1013904223u;
    f = static_cast<float>(s >> 8) / float(1u << 23) - 1.0f;
  }
  return v;
}

std::vector<float> forward(const Conv2dShape& s, const std::vector<float>& x,
                           const std::vector<float>& w) {
  std::vector<float> y(size_t(s.batch * s.out_channels * s.out_h() * s.out_w()));
  cpu::conv2d_forward(s, x.data(), w.data(), nullptr, y.data(), nullptr);
  return y;
}

[[noreturn]] void finding(const char* what, const Conv2dShape& s) {
  std::fprintf(stderr,
               "finding: %s (batch %lld, groups %lld, %lld -> %lld channels, %lld x %lld, pad "
               "%lld, %s)\n",
               what, (long long)s.batch, (long long)s.groups, (long long)s.in_channels,
               (long long)s.out_channels, (long long)s.in_h, (long long)s.in_w, (long long)s.pad_h,
               cpu::gemm_isa_name(cpu::gemm_isa()));
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  Conv2dShape s;
  s.batch = 1 + data[0] % 2;
  s.groups = 1 + data[1] % 3;
  s.in_channels = s.groups * (1 + data[2] % 24);
  s.out_channels = s.groups * 8 * (1 + data[3] % 3);
  s.in_h = 1 + data[4] % 30;
  s.in_w = 12 + data[5] % 48;
  s.kernel_h = s.kernel_w = 3;
  s.pad_h = s.pad_w = data[6] % 3;
  const int threads = 1 + (data[7] & 1);
  const uint32_t seed = size > 8 ? data[8] | (size > 9 ? data[9] << 8 : 0) : 0;
  if (s.out_h() < 1 || s.out_w() < 1) return 0;

  const cpu::GemmIsa isa = cpu::gemm_isa();
  omp_set_num_threads(threads);
  cpu::set_conv_winograd(true);
  if (!cpu::conv_winograd_applies(s)) return 0;
  const std::vector<float> x = values(size_t(s.batch * s.in_channels * s.in_h * s.in_w), seed);
  const std::vector<float> w = values(size_t(s.out_channels * s.in_channels / s.groups * 9), ~seed);
  const std::vector<float> wino = forward(s, x, w);

  // The other family, where this CPU has both: the same bits.
  for (cpu::GemmIsa other : {cpu::GemmIsa::kAvx512, cpu::GemmIsa::kAvx2}) {
    if (other == isa || !cpu::gemm_isa_runs_here(other)) continue;
    cpu::set_gemm_isa(other);
    const bool differ = forward(s, x, w) != wino;
    cpu::set_gemm_isa(isa);
    if (differ) finding("the two ISA families give different bits", s);
  }

  cpu::set_conv_winograd(false);
  const std::vector<float> direct = forward(s, x, w);
  std::vector<float> ax(x.size()), aw(w.size());
  for (size_t i = 0; i < x.size(); ++i) ax[i] = std::fabs(x[i]);
  for (size_t i = 0; i < w.size(); ++i) aw[i] = std::fabs(w[i]);
  const std::vector<float> magnitude = forward(s, ax, aw);
  cpu::set_conv_winograd(true);
  for (size_t i = 0; i < wino.size(); ++i) {
    if (std::isnan(wino[i])) finding("a NaN from finite inputs", s);
    if (std::fabs(wino[i] - direct[i]) > 1e-5f * (magnitude[i] + 1.0f))
      finding("an output far from the direct kernel's", s);
  }
  return 0;
}
