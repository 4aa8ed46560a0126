// CPU softmax (kernels/softmax.h): threads split the rows; each row is walked three times
// (max, exponentials and their sum, scaling) while it is still in cache.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/softmax_row.h"
#include "kernels/softmax.h"

namespace nextvit::kernels::cpu {
void softmax_forward(int64_t rows, int64_t cols, const float* x, float* y) {
  parallel_for(rows, grain_for(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      softmax_row(x + r * cols, y + r * cols, cols);
    }
  });
}

// Derivation: docs/derivations.md#softmax-backward
void softmax_backward(int64_t rows, int64_t cols, const float* y, const float* dy, float* dx) {
  parallel_for(rows, grain_for(cols), [&](int64_t lo, int64_t hi) {
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
