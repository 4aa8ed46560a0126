#pragma once
// 2-D convolution (cross-correlation, as PyTorch) on contiguous NCHW f32 buffers, and its two
// gradients. A Conv2dShape describes one call completely; the kernels take it plus raw pointers:
//
//   x  (batch, in_channels, in_h, in_w)
//   w  (out_channels, in_channels / groups, kernel_h, kernel_w)
//   b  (out_channels)                                  -- may be null: no bias / no bias grad
//   y  (batch, out_channels, out_h(), out_w())
//
// Input channel group g (channels [g * Cin/groups, (g+1) * Cin/groups)) feeds only output
// channels [g * Cout/groups, (g+1) * Cout/groups). Padding is zero padding.
//
// Workspace: a backend may want scratch memory of conv2d_workspace_floats(shape, &n) floats
// (n == 0: none). The caller passes a buffer of at least that size, or null to let the kernel
// find its own. The CPU kernels keep per-thread scratch and report 0.
//
// Ops validate shapes before calling (autograd/ops/conv2d.cpp); the kernels assume a valid one.
#include <cstdint>

namespace nextvit::kernels {

struct Conv2dShape {
  int64_t batch = 0, in_channels = 0, in_h = 0, in_w = 0;
  int64_t out_channels = 0, kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t groups = 1;

  int64_t out_h() const { return (in_h + 2 * pad_h - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w + 2 * pad_w - kernel_w) / stride_w + 1; }
  // A 1x1 kernel with stride 1 and no padding: per image and group a plain matrix product.
  bool pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 &&
           pad_w == 0;
  }
};

#define NV_CONV2D_KERNELS                                                                       \
  /* *floats = scratch the calls below would like for this shape (0: none) */                   \
  void conv2d_workspace_floats(const Conv2dShape& s, int64_t* floats);                          \
  /* y = conv(x, w) + b (b may be null); overwrites y */                                        \
  void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b,     \
                      float* y, float* workspace);                                              \
  /* dx = dL/dx for dy = dL/dy; overwrites dx */                                                \
  void conv2d_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx,   \
                            float* workspace);                                                  \
  /* dw = dL/dw and db = dL/db, each skipped when null (x is unused when dw is); overwrites */  \
  void conv2d_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw, \
                              float* db, float* workspace);

namespace cpu {
NV_CONV2D_KERNELS

// The eval-mode epilogue (CPU only; autograd/ops/conv2d_fused.cpp): what the forward applies to
// each block of its output right after the GEMM wrote it, while it is still in cache, instead
// of a BatchNorm, a ReLU and a residual add, each a pass over a new tensor, afterwards:
//   y[n, c] = relu?((conv(x, w)[n, c] + b[c]) * scale[c] + shift[c]) + residual[n, c]
// scale and shift are both null (no affine map) or both set; relu clamps at zero; residual is
// null (nothing added) or a contiguous tensor of y's shape, which y must not overlap.
struct Conv2dEpilogue {
  const float* scale = nullptr;
  const float* shift = nullptr;
  bool relu = false;
  const float* residual = nullptr;
};
// The eval-mode prologue of a 1x1 convolution (stride 1, no padding): a map of each input
// channel applied as the convolution reads x, instead of a BatchNorm's pass over a new tensor
// before it (a block's pre-norm feeding its Mlp):
//   x'[n, c] = x[n, c] * scale[c] + shift[c]
// in the BatchNorm kernel's expression, so the convolution sees the bits the BatchNorm would
// have stored (the GEMM's packers apply it: GemmRowAffine in kernels/gemm.h). Both null (no
// map) or both set; refused for any other convolution (its zero padding would be mapped too).
struct Conv2dPrologue {
  const float* scale = nullptr;
  const float* shift = nullptr;
};
// conv2d_forward followed by the epilogue (and preceded by the prologue); conv2d_forward is
// this with empty ones.
void conv2d_forward_fused(const Conv2dShape& s, const float* x, const float* w, const float* b,
                          const Conv2dEpilogue& epilogue, float* y,
                          const Conv2dPrologue& prologue = {});
}  // namespace cpu
namespace cuda {
NV_CONV2D_KERNELS
}  // namespace cuda

#undef NV_CONV2D_KERNELS

}  // namespace nextvit::kernels
