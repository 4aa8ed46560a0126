#pragma once
// Batch normalisation over channel dim 1 of a contiguous f32 buffer laid out (N, C, S), where S is
// H * W for BatchNorm2d, L for BatchNorm1d on (N, C, L) and 1 for BatchNorm1d on (N, C). Channel
// c is N runs of S contiguous values, one run per sample, at x + (n * C + c) * S.
//
//   x, y, dy, dx                     (N, C, S)
//   weight, bias, dweight, dbias     (C)   -- weight/bias may be null: gamma = 1, beta = 0
//   running_mean, running_var        (C)   -- updated in place by the training forward, may
//                                             be null there (no running statistics)
//   save_mean, save_invstd           (C)   -- written by both forwards, read by the backward
//
// Forward, with mean and invstd taken from the batch in training and from the running
// statistics in eval:
//   y = (x - mean) * invstd * gamma + beta,   invstd = 1 / sqrt(var + eps)
// and, when `relu` is set, y = max(y, 0) on the store (BatchNorm + ReLU in one pass).
// Training: mean and the biased variance over the N * S values of each channel, accumulated in
// double; then running = (1 - momentum) * running + momentum * batch with the UNBIASED variance
// var * M / (M - 1), M = N * S (PyTorch's rule). The caller guarantees M > 1.
//
// Backward: dy is first masked by y > 0 when y_relu (the fused forward's output) is given. Then
//   dbias   = sum(dy),   dweight = sum(dy * xhat),   xhat = (x - mean) * invstd
//   training: dx = gamma * invstd * (dy - dbias / M - xhat * dweight / M)
//   eval:     dx = gamma * invstd * dy        (the statistics are constants)
// dweight and dbias may be null when not wanted; dx may be null too.
#include <cstdint>

namespace nextvit::kernels {

struct BatchNormShape {
  int64_t batch = 0, channels = 0, spatial = 1;
  int64_t count() const { return batch * spatial; }  // values per channel
};

#define NV_BATCH_NORM_KERNELS                                                                      \
  /* training forward: batch statistics, running-stat update, y; overwrites y and save_* */        \
  void batch_norm_forward_train(const BatchNormShape& s, const float* x, const float* weight,      \
                                const float* bias, float momentum, float eps, float* running_mean, \
                                float* running_var, bool relu, float* y, float* save_mean,         \
                                float* save_invstd);                                               \
  /* eval forward: normalise with the running statistics; save_* get them (invstd computed) */     \
  void batch_norm_forward_eval(const BatchNormShape& s, const float* x, const float* weight,       \
                               const float* bias, const float* running_mean,                       \
                               const float* running_var, float eps, bool relu, float* y,           \
                               float* save_mean, float* save_invstd);                              \
  /* gradients for dy given the forward's x, save_*, and y when it applied ReLU (else null) */     \
  void batch_norm_backward(const BatchNormShape& s, const float* x, const float* dy,               \
                           const float* y_relu, const float* weight, const float* save_mean,       \
                           const float* save_invstd, bool training, float* dx, float* dweight,     \
                           float* dbias);

namespace cpu {
NV_BATCH_NORM_KERNELS
}  // namespace cpu
namespace cuda {
NV_BATCH_NORM_KERNELS
}  // namespace cuda

#undef NV_BATCH_NORM_KERNELS

}  // namespace nextvit::kernels
