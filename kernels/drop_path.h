#pragma once
// Per-sample scaling for stochastic depth (drop path): x viewed as (rows, cols) with one row per
// sample, y[r, :] = x[r, :] * row_scale[r]. The drop-path op builds row_scale where the tensor
// lives (0 for a dropped sample, 1 / keep_prob for a kept one) from a counter-based generator
// (core/philox.h), so CPU and GPU draw the same mask for the same seed and the GPU needs no
// upload, and runs the same scaling kernel for the forward and, with the same row_scale, for
// the backward.
#include <cstdint>

namespace nextvit::kernels {

#define NV_DROP_PATH_KERNELS                                                                     \
  /* y = x * row_scale[row]; overwrites y, which may alias x */                                  \
  void scale_rows(int64_t rows, int64_t cols, const float* x, const float* row_scale, float* y); \
  /* row_scale[r] = philox::uniform(seed, r) < keep ? 1 / keep : 0 */                            \
  void drop_path_scales(int64_t rows, uint64_t seed, float keep, float* row_scale);

namespace cpu {
NV_DROP_PATH_KERNELS
}  // namespace cpu
namespace cuda {
NV_DROP_PATH_KERNELS
}  // namespace cuda

#undef NV_DROP_PATH_KERNELS

}  // namespace nextvit::kernels
