// CPU block copy for concat (kernels/shape.h): one memcpy per row, rows split across threads
// when there is enough data to share.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/parallel.h"
#include "kernels/shape.h"

namespace nextvit::kernels::cpu {

void copy_2d(int64_t rows, int64_t cols, const float* src, int64_t src_stride, float* dst,
             int64_t dst_stride) {
  if (cols <= 0) return;
  const int64_t grain = grain_for(cols);
  parallel_for(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      std::memcpy(dst + r * dst_stride, src + r * src_stride, cols * sizeof(float));
    }
  });
}

}  // namespace nextvit::kernels::cpu
