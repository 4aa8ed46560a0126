// CPU softmax (kernels/softmax.h): threads split the rows; each row is walked three times
// (max, exponentials and their sum, scaling) while it is still in cache.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/parallel.h"
#include "kernels/softmax.h"

namespace nextvit::kernels::cpu {
namespace {

int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, cols));
}

}  // namespace

void softmax_forward(int64_t rows, int64_t cols, const float* x, float* y) {
  parallel_for(rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      float max = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < cols; ++i) max = std::max(max, xr[i]);
      // Every term is in (0, 1], so a double sum adds nothing but cost; float is exact enough
      // and the sum is at least 1 (the maximum's own term).
      float sum = 0.0f;
      for (int64_t i = 0; i < cols; ++i) {
        yr[i] = std::exp(xr[i] - max);
        sum += yr[i];
      }
      const float inv = 1.0f / sum;
      for (int64_t i = 0; i < cols; ++i) yr[i] *= inv;
    }
  });
}

// Derivation: docs/derivations.md#softmax-backward
void softmax_backward(int64_t rows, int64_t cols, const float* y, const float* dy, float* dx) {
  parallel_for(rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* yr = y + r * cols;
      const float* gr = dy + r * cols;
      float* dxr = dx + r * cols;
      double dot = 0.0;
      for (int64_t i = 0; i < cols; ++i) dot += double(yr[i]) * gr[i];
      const float d = static_cast<float>(dot);
      for (int64_t i = 0; i < cols; ++i) dxr[i] = yr[i] * (gr[i] - d);
    }
  });
}

}  // namespace nextvit::kernels::cpu
