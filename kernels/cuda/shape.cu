// copy_2d on the GPU (kernels/shape.h): the block copies behind concat and its backward. One
// 2-D grid: blockIdx.y walks rows, blockIdx.x * blockDim.x + threadIdx.x walks the columns of a
// row, so consecutive threads copy consecutive floats (coalesced on both sides) with no
// division per element. Rows beyond the grid's 65535 are covered by a row-stride loop.
#include <algorithm>

#include "kernels/cuda/launch.cuh"
#include "kernels/shape.h"

namespace nextvit::kernels::cuda {
namespace {

__global__ void copy_2d_kernel(int64_t rows, int64_t cols, const float* __restrict__ src,
                               int64_t src_stride, float* __restrict__ dst, int64_t dst_stride) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    dst[r * dst_stride + c] = src[r * src_stride + c];
  }
}

}  // namespace

void copy_2d(int64_t rows, int64_t cols, const float* src, int64_t src_stride, float* dst,
             int64_t dst_stride) {
  if (rows <= 0 || cols <= 0) return;
  const int block = 256;
  const int64_t col_blocks = (cols + block - 1) / block;
  NV_CHECK(col_blocks <= 0x7fffffff, "copy_2d: {} columns exceed the grid", cols);
  const dim3 grid(unsigned(col_blocks), unsigned(std::min<int64_t>(rows, 65535)));
  NV_LAUNCH(grid, block, 0, stream(), copy_2d_kernel)(rows, cols, src, src_stride, dst, dst_stride);
  NV_CUDA_CHECK_LAUNCH("copy_2d of ({}, {})", rows, cols);
}

}  // namespace nextvit::kernels::cuda
