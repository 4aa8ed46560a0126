#pragma once
// Average pooling on contiguous f32 buffers.
//
// avg_pool2d: x (planes, in_h, in_w) -> y (planes, out_h, out_w), planes = N * C; each plane is
// pooled on its own. avg_pool1d over (N, C, L) is the same kernel with in_h = 1, kernel_h = 1.
// Window (oh, ow) covers rows [oh * stride_h - pad_h, + kernel_h) and the same for columns,
// clipped first to the padded input (which only bites with ceil_mode) and then to the input:
//   divisor = count_include_pad ? clipped-to-padded window size : clipped-to-input window size
// exactly as PyTorch's CPU and CUDA kernels; a window left with no input cell gives 0.
//
// global_avg_pool: x (rows, cols) -> y (rows), the mean of each row (rows = N * C, cols = H * W).
#include <cstdint>

namespace nextvit::kernels {

struct AvgPool2dShape {
  int64_t planes = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  bool count_include_pad = true;
};

// Output length of one pooled axis, PyTorch's pooling_output_shape with dilation 1: with
// ceil_mode the last window may hang over the end, but must start inside the input or the
// left padding (otherwise it is dropped). Callers check kernel, stride > 0 and the result > 0.
inline int64_t pooled_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                           bool ceil_mode) {
  const int64_t span = in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0);
  // Floor division, also for a negative span (a window larger than the padded input).
  int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

#define NV_POOLING_KERNELS                                                                  \
  /* y = average of each window of x; overwrites y */                                       \
  void avg_pool2d_forward(const AvgPool2dShape& s, const float* x, float* y);               \
  /* dx = each dy spread evenly (dy / divisor) over its window's input cells; overwrites */ \
  void avg_pool2d_backward(const AvgPool2dShape& s, const float* dy, float* dx);            \
  /* y[r] = mean of x[r, :] */                                                              \
  void global_avg_pool_forward(int64_t rows, int64_t cols, const float* x, float* y);       \
  /* dx[r, :] = dy[r] / cols */                                                             \
  void global_avg_pool_backward(int64_t rows, int64_t cols, const float* dy, float* dx);

namespace cpu {
NV_POOLING_KERNELS
}  // namespace cpu
namespace cuda {
NV_POOLING_KERNELS
}  // namespace cuda

#undef NV_POOLING_KERNELS

}  // namespace nextvit::kernels
