// CPU per-sample scaling for drop path (kernels/drop_path.h): one flat pass over the buffer,
// split across threads by element so that a batch of two large samples still uses every core.
#include <algorithm>

#include "core/philox.h"
#include "kernels/cpu/parallel.h"
#include "kernels/drop_path.h"

namespace nextvit::kernels::cpu {

void scale_rows(int64_t rows, int64_t cols, const float* x, const float* row_scale, float* y) {
  parallel_for(rows * cols, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    // Walk [lo, hi) row segment by row segment so the inner loop is a plain vectorisable scale.
    int64_t i = lo;
    while (i < hi) {
      const int64_t r = i / cols, end = std::min(hi, (r + 1) * cols);
      const float s = row_scale[r];
      for (; i < end; ++i) y[i] = x[i] * s;
    }
  });
}

void drop_path_scales(int64_t rows, uint64_t seed, float keep, float* row_scale) {
  // keep == 0 drops every sample and divides nothing by zero.
  for (int64_t r = 0; r < rows; ++r) {
    row_scale[r] = philox::uniform(seed, uint64_t(r)) < keep ? 1.0f / keep : 0.0f;
  }
}

}  // namespace nextvit::kernels::cpu
