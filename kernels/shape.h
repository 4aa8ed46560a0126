#pragma once
// Block copies for the shape ops. concat along dim d of inputs viewed as (outer, size_d * inner)
// is, per input, a copy of `rows` = outer runs of `cols` = size_d * inner contiguous values into
// the output at a column offset; its backward is the same copy in the other direction. Permutes
// and transposes need no kernel of their own: Tensor::contiguous() does strided copies on both
// devices.
#include <cstdint>

namespace nextvit::kernels {

#define NV_SHAPE_KERNELS                                                                      \
  /* dst[r * dst_stride + c] = src[r * src_stride + c] for r < rows, c < cols (no overlap) */ \
  void copy_2d(int64_t rows, int64_t cols, const float* src, int64_t src_stride, float* dst,  \
               int64_t dst_stride);

namespace cpu {
NV_SHAPE_KERNELS
}  // namespace cpu
namespace cuda {
NV_SHAPE_KERNELS
}  // namespace cuda

#undef NV_SHAPE_KERNELS

}  // namespace nextvit::kernels
