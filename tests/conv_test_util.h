#pragma once
// What the convolution kernel tests share (tests/test_conv2d_direct.cpp,
// tests/test_conv2d_winograd.cpp): reproducible inputs and the error measure against a
// double-precision reference.
#include <cmath>
#include <cstdint>
#include <vector>

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

}  // namespace nextvit::conv_test
