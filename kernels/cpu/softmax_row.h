#pragma once
// One softmax row, shared by the softmax op and the CPU pooled attention: three passes (max,
// exponentials and their sum, scaling) while the row is still in cache. y may be x.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace nextvit::kernels::cpu {

inline void softmax_row(const float* x, float* y, int64_t n) {
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  // Every term is in (0, 1], so a double sum adds nothing but cost; float is exact enough and
  // the sum is at least 1 (the maximum's own term).
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = std::exp(x[i] - max);
    sum += y[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

}  // namespace nextvit::kernels::cpu
