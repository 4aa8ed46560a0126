#pragma once
// Launch helpers shared by the CUDA kernels: grid sizing for grid-stride loops and the warp /
// block reductions that reductions (sum, softmax, batch-norm statistics) are built from.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda/check.h"
#include "core/cuda/launch.h"
#include "core/cuda/stream.h"
#include "kernels/cuda/device_props.h"

namespace nextvit::kernels::cuda {

// Enough blocks to fill the GPU several times over (32 per SM of the device), no more: each
// thread then loops (grid-stride), which amortises index math and keeps launches cheap for any n.
inline int grid_size(int64_t n, int block) {
  const int64_t blocks = (n + block - 1) / block;
  const int64_t most = int64_t(multiprocessor_count()) * 32;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, most)));
}

inline cudaStream_t stream() {
  return cuda_rt::current_stream();
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block: warp shuffles, then one value per warp through shared memory, then the
// first warp reduces those. Every thread gets the result. blockDim.x must be a multiple of 32.
template <typename T>
__device__ __forceinline__ T block_sum(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = (threadIdx.x < warps) ? partial[threadIdx.x] : T(0);
  if (warp == 0) v = warp_sum(v);
  if (threadIdx.x == 0) partial[0] = v;
  __syncthreads();
  return partial[0];
}

}  // namespace nextvit::kernels::cuda
