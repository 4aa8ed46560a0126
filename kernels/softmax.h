#pragma once
// Softmax over the last dimension of a contiguous f32 buffer viewed as (rows, cols).
//
// Forward: y[r, :] = exp(x[r, :] - max) / sum(exp(x[r, :] - max)); subtracting the row maximum
// keeps every exponent <= 0, so rows with values of 1e4 or more stay finite.
// Backward: dx[r, :] = y[r, :] * (dy[r, :] - sum(y[r, :] * dy[r, :])), from the output alone.
#include <cstdint>

namespace nextvit::kernels {

#define NV_SOFTMAX_KERNELS                                                        \
  /* y[r, :] = softmax(x[r, :]); overwrites y, which may alias x */               \
  void softmax_forward(int64_t rows, int64_t cols, const float* x, float* y);     \
  /* dx for dy given the forward's output y; overwrites dx, which may alias dy */ \
  void softmax_backward(int64_t rows, int64_t cols, const float* y, const float* dy, float* dx);

namespace cpu {
NV_SOFTMAX_KERNELS
}  // namespace cpu
namespace cuda {
NV_SOFTMAX_KERNELS
}  // namespace cuda

#undef NV_SOFTMAX_KERNELS

}  // namespace nextvit::kernels
