#pragma once
// Elementwise kernels over contiguous f32 buffers of n elements. Memory-bound: one pass, no
// temporaries. `out` may alias an input.
#include <cstdint>

namespace nextvit::kernels {

#define NV_ELEMENTWISE_KERNELS                                                          \
  void add(int64_t n, const float* a, const float* b, float* out); /* out = a + b */    \
  void mul(int64_t n, const float* a, const float* b, float* out); /* out = a * b */    \
  void scale(int64_t n, float s, const float* x, float* out);      /* out = s * x */    \
  void axpy(int64_t n, float alpha, const float* x, float* y);     /* y += alpha * x */ \
  void relu_forward(int64_t n, const float* x, float* y);                               \
  /* dx = dy where y > 0 (y is the forward output: the mask is recomputed from it) */   \
  void relu_backward(int64_t n, const float* y, const float* dy, float* dx);            \
  /* out[0] = sum of x, accumulated in double on the CPU / a tree on the GPU */         \
  void sum(int64_t n, const float* x, float* out);                                      \
  /* out[i] = s[0] * factor: a scalar broadcast where it lives (no read-back) */        \
  void fill_scaled(int64_t n, const float* s, float factor, float* out);

namespace cpu {
NV_ELEMENTWISE_KERNELS
}  // namespace cpu
namespace cuda {
NV_ELEMENTWISE_KERNELS
}  // namespace cuda

#undef NV_ELEMENTWISE_KERNELS

}  // namespace nextvit::kernels
