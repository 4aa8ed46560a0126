// Average pooling on the GPU (kernels/pooling.h), PyTorch's window and divisor rules.
//
// avg_pool2d forward: one thread per output cell sums its clipped window. Backward: one thread
// per INPUT cell gathers dy / divisor from every output window that covers it (the windows
// covering input row ih are those with oh * stride - pad <= ih < oh * stride - pad + kernel),
// so each dx element is written once and no atomics are needed. Both are memory-bound.
// global_avg_pool forward: one warp per row (a (n, c) plane; Next-ViT's head pools 7 x 7),
// lanes stride the row, a shuffle reduction sums it. Backward: one thread per element.
#include "kernels/cuda/launch.cuh"
#include "kernels/pooling.h"

namespace nextvit::kernels::cuda {
namespace {

#define NV_GRID_STRIDE(i, n)                                                \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

// The clipped window of output cell (oh, ow) and its divisor: the CPU kernel's rule.
struct Window {
  int64_t h0, h1, w0, w1;
  float divisor;
};

__device__ __forceinline__ Window window(const AvgPool2dShape& s, int64_t oh, int64_t ow) {
  int64_t h0 = oh * s.stride_h - s.pad_h, w0 = ow * s.stride_w - s.pad_w;
  int64_t h1 = min(h0 + s.kernel_h, s.in_h + s.pad_h);
  int64_t w1 = min(w0 + s.kernel_w, s.in_w + s.pad_w);
  const int64_t padded_size = (h1 - h0) * (w1 - w0);
  h0 = max(h0, int64_t(0));
  w0 = max(w0, int64_t(0));
  h1 = min(h1, s.in_h);
  w1 = min(w1, s.in_w);
  const int64_t size = s.count_include_pad ? padded_size : (h1 - h0) * (w1 - w0);
  return {h0, h1, w0, w1, static_cast<float>(size)};
}

__global__ void avg_pool2d_forward_kernel(AvgPool2dShape s, const float* __restrict__ x,
                                          float* __restrict__ y) {
  const int64_t out_plane = s.out_h * s.out_w;
  NV_GRID_STRIDE(e, s.planes * out_plane) {
    const int64_t p = e / out_plane, oh = e % out_plane / s.out_w, ow = e % s.out_w;
    const Window w = window(s, oh, ow);
    if (w.h0 >= w.h1 || w.w0 >= w.w1) {
      y[e] = 0.0f;
      continue;
    }
    const float* xp = x + p * s.in_h * s.in_w;
    float sum = 0.0f;
    for (int64_t ih = w.h0; ih < w.h1; ++ih) {
      for (int64_t iw = w.w0; iw < w.w1; ++iw) sum += xp[ih * s.in_w + iw];
    }
    y[e] = sum / w.divisor;
  }
}

// The output indices o with o * stride - pad <= i < o * stride - pad + kernel, within [0, out).
__device__ __forceinline__ void covering(int64_t i, int64_t kernel, int64_t stride, int64_t pad,
                                         int64_t out, int64_t& lo, int64_t& hi) {
  const int64_t a = i + pad - kernel + 1;  // o * stride >= a
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  hi = min((i + pad) / stride + 1, out);  // o * stride <= i + pad (i + pad >= 0)
}

__global__ void avg_pool2d_backward_kernel(AvgPool2dShape s, const float* __restrict__ dy,
                                           float* __restrict__ dx) {
  const int64_t in_plane = s.in_h * s.in_w;
  NV_GRID_STRIDE(e, s.planes * in_plane) {
    const int64_t p = e / in_plane, ih = e % in_plane / s.in_w, iw = e % s.in_w;
    int64_t oh0, oh1, ow0, ow1;
    covering(ih, s.kernel_h, s.stride_h, s.pad_h, s.out_h, oh0, oh1);
    covering(iw, s.kernel_w, s.stride_w, s.pad_w, s.out_w, ow0, ow1);
    const float* dyp = dy + p * s.out_h * s.out_w;
    float g = 0.0f;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      for (int64_t ow = ow0; ow < ow1; ++ow)
        g += dyp[oh * s.out_w + ow] / window(s, oh, ow).divisor;
    }
    dx[e] = g;
  }
}

// One warp per row.
__global__ void global_avg_pool_forward_kernel(int64_t rows, int64_t cols,
                                               const float* __restrict__ x, float* __restrict__ y) {
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x % 32;
  for (int64_t r = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    const float* xr = x + r * cols;
    float sum = 0.0f;
    for (int64_t i = lane; i < cols; i += 32) sum += xr[i];
    sum = warp_sum(sum);
    if (lane == 0) y[r] = sum / static_cast<float>(cols);
  }
}

__global__ void global_avg_pool_backward_kernel(int64_t rows, int64_t cols,
                                                const float* __restrict__ dy,
                                                float* __restrict__ dx) {
  const float inv = 1.0f / static_cast<float>(cols);
  NV_GRID_STRIDE(e, rows * cols) {
    dx[e] = dy[e / cols] * inv;
  }
}

#undef NV_GRID_STRIDE

}  // namespace

void avg_pool2d_forward(const AvgPool2dShape& s, const float* x, float* y) {
  const int64_t n = s.planes * s.out_h * s.out_w;
  if (n == 0) return;
  NV_LAUNCH(grid_size(n, 256), 256, 0, stream(), avg_pool2d_forward_kernel)(s, x, y);
  NV_CUDA_CHECK_LAUNCH("avg_pool2d forward over {} planes of {}x{}", s.planes, s.in_h, s.in_w);
}

void avg_pool2d_backward(const AvgPool2dShape& s, const float* dy, float* dx) {
  const int64_t n = s.planes * s.in_h * s.in_w;
  if (n == 0) return;
  NV_LAUNCH(grid_size(n, 256), 256, 0, stream(), avg_pool2d_backward_kernel)(s, dy, dx);
  NV_CUDA_CHECK_LAUNCH("avg_pool2d backward over {} planes of {}x{}", s.planes, s.in_h, s.in_w);
}

void global_avg_pool_forward(int64_t rows, int64_t cols, const float* x, float* y) {
  if (rows == 0) return;
  NV_LAUNCH(grid_size(rows * 32, 256), 256, 0, stream(), global_avg_pool_forward_kernel)
  (rows, cols, x, y);
  NV_CUDA_CHECK_LAUNCH("global_avg_pool forward of ({}, {})", rows, cols);
}

void global_avg_pool_backward(int64_t rows, int64_t cols, const float* dy, float* dx) {
  if (rows == 0 || cols == 0) return;
  NV_LAUNCH(grid_size(rows * cols, 256), 256, 0, stream(), global_avg_pool_backward_kernel)
  (rows, cols, dy, dx);
  NV_CUDA_CHECK_LAUNCH("global_avg_pool backward of ({}, {})", rows, cols);
}

}  // namespace nextvit::kernels::cuda
