// Softmax over rows on the GPU (kernels/softmax.h): one warp per row.
//
// Rows of at most 1024 columns (E-MHSA's 49 keys, a classifier's 1000 logits) are held in
// registers, VPL = values per lane, a compile-time constant (1, 2, 4, ..., 32) so the loops
// unroll and the values never touch local memory: the row is read once, its maximum and sum
// reduced by shuffles, and written once. Lane l holds columns l, l + 32, ...: each load and
// store instruction of the warp covers 32 consecutive floats (coalesced). Longer rows use the
// online form: one pass keeps a running maximum and a sum rescaled whenever the maximum grows,
// the warp merges the lanes' (max, sum) pairs, a second pass writes. y may alias x and dx may
// alias dy: every lane reads a value before it writes that same element, and only it does.
// Explained: docs/kernels/softmax.md
#include <cmath>

#include "kernels/cuda/launch.cuh"
#include "kernels/softmax.h"

namespace nextvit::kernels::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarpsPerBlock = kBlock / 32;

__device__ __forceinline__ int64_t warp_row() {
  return blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32;
}
__device__ __forceinline__ int64_t row_step() {
  return int64_t(gridDim.x) * kWarpsPerBlock;
}

template <int VPL>
__global__ void __launch_bounds__(kBlock)
    forward_registers(int64_t rows, int cols, const float* x, float* y) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = warp_row(); r < rows; r += row_step()) {
    const float* xr = x + r * cols;
    float v[VPL];
    float mx = -INFINITY;
#pragma unroll
    for (int k = 0; k < VPL; ++k) {
      const int c = lane + 32 * k;
      v[k] = c < cols ? xr[c] : -INFINITY;
      mx = fmaxf(mx, v[k]);
    }
    mx = warp_max(mx);
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < VPL; ++k) {
      v[k] = lane + 32 * k < cols ? expf(v[k] - mx) : 0.0f;
      sum += v[k];
    }
    const float inv = 1.0f / warp_sum(sum);
    float* yr = y + r * cols;
#pragma unroll
    for (int k = 0; k < VPL; ++k) {
      const int c = lane + 32 * k;
      if (c < cols) yr[c] = v[k] * inv;
    }
  }
}

// Merges a lane's running (max, sum) with another's: the sums are rescaled to the larger max.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float mm = fmaxf(m, m2);
  if (mm == -INFINITY) return;  // both empty
  s = s * expf(m - mm) + s2 * expf(m2 - mm);
  m = mm;
}

__global__ void __launch_bounds__(kBlock)
    forward_online(int64_t rows, int64_t cols, const float* x, float* y) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = warp_row(); r < rows; r += row_step()) {
    const float* xr = x + r * cols;
    float m = -INFINITY, s = 0.0f;
    for (int64_t c = lane; c < cols; c += 32) {
      const float v = xr[c];
      if (v > m) {
        s = s * expf(m - v) + 1.0f;
        m = v;
      } else {
        s += expf(v - m);
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    }
    const float inv = 1.0f / s;
    float* yr = y + r * cols;
    for (int64_t c = lane; c < cols; c += 32) yr[c] = expf(xr[c] - m) * inv;
  }
}

// Derivation: docs/derivations.md#softmax-backward
template <int VPL>
__global__ void __launch_bounds__(kBlock)
    backward_registers(int64_t rows, int cols, const float* y, const float* dy, float* dx) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = warp_row(); r < rows; r += row_step()) {
    float yv[VPL], gv[VPL];
    float dot = 0.0f;
#pragma unroll
    for (int k = 0; k < VPL; ++k) {
      const int c = lane + 32 * k;
      yv[k] = c < cols ? y[r * cols + c] : 0.0f;
      gv[k] = c < cols ? dy[r * cols + c] : 0.0f;
      dot += yv[k] * gv[k];
    }
    dot = warp_sum(dot);
#pragma unroll
    for (int k = 0; k < VPL; ++k) {
      const int c = lane + 32 * k;
      if (c < cols) dx[r * cols + c] = yv[k] * (gv[k] - dot);
    }
  }
}

__global__ void __launch_bounds__(kBlock)
    backward_online(int64_t rows, int64_t cols, const float* y, const float* dy, float* dx) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = warp_row(); r < rows; r += row_step()) {
    const float* yr = y + r * cols;
    const float* gr = dy + r * cols;
    float dot = 0.0f;
    for (int64_t c = lane; c < cols; c += 32) dot += yr[c] * gr[c];
    dot = warp_sum(dot);
    float* dxr = dx + r * cols;
    for (int64_t c = lane; c < cols; c += 32) dxr[c] = yr[c] * (gr[c] - dot);
  }
}

int blocks_for(int64_t rows) {
  return grid_size(rows * 32, kBlock);
}

// Runs launch.template run<VPL>() for the smallest VPL with 32 * VPL >= cols; false (nothing
// launched) when the row is longer than 1024.
template <typename L>
bool with_vpl(int64_t cols, const L& launch) {
  if (cols > 1024) return false;
  if (cols <= 32) {
    launch.template run<1>();
  } else if (cols <= 64) {
    launch.template run<2>();
  } else if (cols <= 128) {
    launch.template run<4>();
  } else if (cols <= 256) {
    launch.template run<8>();
  } else if (cols <= 512) {
    launch.template run<16>();
  } else {
    launch.template run<32>();
  }
  return true;
}

struct ForwardLaunch {
  int64_t rows, cols;
  const float* x;
  float* y;
  template <int VPL>
  void run() const {
    NV_LAUNCH(blocks_for(rows), kBlock, 0, stream(), forward_registers<VPL>)(rows, int(cols), x, y);
  }
};

struct BackwardLaunch {
  int64_t rows, cols;
  const float *y, *dy;
  float* dx;
  template <int VPL>
  void run() const {
    NV_LAUNCH(blocks_for(rows), kBlock, 0, stream(), backward_registers<VPL>)
    (rows, int(cols), y, dy, dx);
  }
};

}  // namespace

void softmax_forward(int64_t rows, int64_t cols, const float* x, float* y) {
  if (rows == 0 || cols == 0) return;
  if (!with_vpl(cols, ForwardLaunch{rows, cols, x, y})) {
    NV_LAUNCH(blocks_for(rows), kBlock, 0, stream(), forward_online)(rows, cols, x, y);
  }
  NV_CUDA_CHECK_LAUNCH("softmax forward of ({}, {})", rows, cols);
}

void softmax_backward(int64_t rows, int64_t cols, const float* y, const float* dy, float* dx) {
  if (rows == 0 || cols == 0) return;
  if (!with_vpl(cols, BackwardLaunch{rows, cols, y, dy, dx})) {
    NV_LAUNCH(blocks_for(rows), kBlock, 0, stream(), backward_online)(rows, cols, y, dy, dx);
  }
  NV_CUDA_CHECK_LAUNCH("softmax backward of ({}, {})", rows, cols);
}

}  // namespace nextvit::kernels::cuda
