#pragma once
// What the convolution kernel tests share (tests/test_conv2d_direct.cpp,
// tests/test_conv2d_winograd.cpp): reproducible inputs, a double-precision convolution by the
// definition, and the error measure against it.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/conv2d.h"

namespace nextvit::conv_test {

// n floats in [-1, 1] in steps of 0.001, from a seed.
inline std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& f : v) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    f = static_cast<float>(static_cast<int64_t>(st >> 40) % 2001 - 1000) / 1000.0f;
  }
  return v;
}

// Largest |a - ref| / (1 + |ref|); infinite if any is NaN.
inline double worst_error(const std::vector<float>& a, const std::vector<double>& ref) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(a[i] - ref[i]) / (1.0 + std::fabs(ref[i]));
    worst = std::isnan(d) ? INFINITY : std::max(worst, d);
  }
  return worst;
}

// y = relu?((conv(x, w) + b) * scale + shift) + residual by the definition, in double (b and
// the epilogue's arrays may be null).
inline std::vector<double> reference(const kernels::Conv2dShape& s, const std::vector<float>& x,
                                     const std::vector<float>& w, const float* b,
                                     const kernels::cpu::Conv2dEpilogue& e) {
  const int64_t ho = s.out_h(), wo = s.out_w(), cin_g = s.in_channels / s.groups;
  const int64_t cout_g = s.out_channels / s.groups;
  std::vector<double> y(size_t(s.batch * s.out_channels * ho * wo));
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t co = 0; co < s.out_channels; ++co) {
      const int64_t grp = co / cout_g;
      for (int64_t oh = 0; oh < ho; ++oh) {
        for (int64_t ow = 0; ow < wo; ++ow) {
          double acc = b ? b[co] : 0.0;
          for (int64_t ci = 0; ci < cin_g; ++ci) {
            for (int64_t i = 0; i < s.kernel_h; ++i) {
              const int64_t ih = oh * s.stride_h - s.pad_h + i;
              if (ih < 0 || ih >= s.in_h) continue;
              for (int64_t j = 0; j < s.kernel_w; ++j) {
                const int64_t iw = ow * s.stride_w - s.pad_w + j;
                if (iw < 0 || iw >= s.in_w) continue;
                acc +=
                    double(
                        x[((n * s.in_channels + grp * cin_g + ci) * s.in_h + ih) * s.in_w + iw]) *
                    w[((co * cin_g + ci) * s.kernel_h + i) * s.kernel_w + j];
              }
            }
          }
          if (e.scale) acc = acc * e.scale[co] + e.shift[co];
          if (e.relu && acc < 0.0) acc = 0.0;
          const size_t at = size_t(((n * s.out_channels + co) * ho + oh) * wo + ow);
          if (e.residual) acc += e.residual[at];
          y[at] = acc;
        }
      }
    }
  }
  return y;
}

}  // namespace nextvit::conv_test
