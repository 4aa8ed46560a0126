// scale_rows on the GPU (kernels/drop_path.h): y = x * row_scale[row], the forward and backward
// of drop path. A 2-D grid as copy_2d's (blockIdx.y: rows, x: columns), so the row of an
// element needs no division; row_scale is a device array of one factor per sample.
#include <algorithm>

#include "core/philox.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/drop_path.h"

namespace nextvit::kernels::cuda {
namespace {

__global__ void scale_rows_kernel(int64_t rows, int64_t cols, const float* x,
                                  const float* __restrict__ row_scale, float* y) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    y[r * cols + c] = x[r * cols + c] * row_scale[r];
}

// One thread per sample: the same Philox draw as the CPU's kernels::cpu::drop_path_scales.
__global__ void drop_path_scales_kernel(int64_t rows, uint64_t seed, float keep,
                                        float* __restrict__ row_scale) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    row_scale[r] = philox::uniform(seed, uint64_t(r)) < keep ? 1.0f / keep : 0.0f;
  }
}

}  // namespace

void drop_path_scales(int64_t rows, uint64_t seed, float keep, float* row_scale) {
  if (rows <= 0) return;
  NV_LAUNCH(grid_size(rows, 128), 128, 0, stream(), drop_path_scales_kernel)
  (rows, seed, keep, row_scale);
  NV_CUDA_CHECK_LAUNCH("drop_path mask of {} samples", rows);
}

void scale_rows(int64_t rows, int64_t cols, const float* x, const float* row_scale, float* y) {
  if (rows <= 0 || cols <= 0) return;
  const int block = 256;
  const int64_t col_blocks = (cols + block - 1) / block;
  NV_CHECK(col_blocks <= 0x7fffffff, "scale_rows: {} columns exceed the grid", cols);
  const dim3 grid(unsigned(col_blocks), unsigned(std::min<int64_t>(rows, 65535)));
  NV_LAUNCH(grid, block, 0, stream(), scale_rows_kernel)(rows, cols, x, row_scale, y);
  NV_CUDA_CHECK_LAUNCH("scale_rows of ({}, {})", rows, cols);
}

}  // namespace nextvit::kernels::cuda
