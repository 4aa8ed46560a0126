#pragma once
// Deterministic full reductions: the sum over n elements of map(i), in two passes and with no
// atomics, so that the result has the same bits on every run (a float atomicAdd per block adds
// the blocks' partials in whatever order they finish; the emulator's race check flags that).
//   1. grid-stride: each thread accumulates its slice in double, block_sum reduces the block,
//      thread 0 writes the block's partial to scratch;
//   2. one warp adds the partials: lane l takes partials l, l + 32, ..., in order, and the
//      shuffle tree combines the lanes in a fixed order.
// The grid is at most grid_size()'s cap (a few thousand blocks), so pass 2 reads a few
// kilobytes. Used by sum (elementwise.cu) and the gradient norm's sum of squares (optim.cu).
#include "kernels/cuda/launch.cuh"

namespace nextvit::kernels::cuda {

template <typename Map>
__global__ void reduce_partials_kernel(int64_t n, Map map, double* __restrict__ partial) {
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    acc += map(i);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

template <bool Accumulate>
__global__ void reduce_finish_kernel(int blocks, const double* __restrict__ partial,
                                     float* __restrict__ out) {
  double acc = 0.0;
  for (int b = threadIdx.x; b < blocks; b += 32) acc += partial[b];
  acc = warp_sum(acc);
  if (threadIdx.x == 0) out[0] = Accumulate ? out[0] + static_cast<float>(acc) : float(acc);
}

// out[0] = sum of map(i) for i < n (accumulate: out[0] += that sum). n > 0.
template <typename Map>
void deterministic_sum(int64_t n, Map map, bool accumulate, float* out, const char* what) {
  constexpr int kBlock = 256;
  const int blocks = grid_size(n, kBlock);
  double* partial = static_cast<double*>(cuda_rt::workspace(sizeof(double) * size_t(blocks)));
  NV_LAUNCH(blocks, kBlock, 0, stream(), reduce_partials_kernel<Map>)(n, map, partial);
  NV_CUDA_CHECK_LAUNCH("{}: partial sums of {} elements", what, n);
  if (accumulate) {
    NV_LAUNCH(1, 32, 0, stream(), reduce_finish_kernel<true>)(blocks, partial, out);
  } else {
    NV_LAUNCH(1, 32, 0, stream(), reduce_finish_kernel<false>)(blocks, partial, out);
  }
  NV_CUDA_CHECK_LAUNCH("{}: sum of {} partials", what, blocks);
}

}  // namespace nextvit::kernels::cuda
