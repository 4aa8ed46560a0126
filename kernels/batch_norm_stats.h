#pragma once
// The end of a BatchNorm channel's training statistics, shared by the CPU kernel
// (kernels/cpu/batch_norm.cpp) and the CUDA kernels (kernels/cuda/batch_norm.cu): both devices
// turn the same sums into mean, 1/std and the running-statistics update with the same
// operations in the same order, so equal sums give equal bits.
#include <cmath>
#include <cstdint>

#include "kernels/cuda/hd.h"

namespace nextvit::kernels {

struct BatchNormChannelStats {
  double mean, invstd;
};

// s1, s2: the sums of d and d^2 over the channel's M values, d = x - shift (the shift, one of
// the channel's values, keeps the variance's cancellation small). Updates running_mean[c] and
// running_var[c] (PyTorch's rule: momentum, unbiased variance) unless running_mean is null.
NV_HD BatchNormChannelStats finish_batch_norm_stats(double shift, double s1, double s2, int64_t M,
                                                    float eps, float momentum, float* running_mean,
                                                    float* running_var, int64_t c) {
  const double mean_d = s1 / double(M);
  const double var = fmax(0.0, s2 / double(M) - mean_d * mean_d);  // biased
  const double mean = shift + mean_d;
  if (running_mean != nullptr) {
    const double m = momentum;
    running_mean[c] = static_cast<float>((1.0 - m) * running_mean[c] + m * mean);
    const double unbiased = M > 1 ? var * double(M) / double(M - 1) : var;
    running_var[c] = static_cast<float>((1.0 - m) * running_var[c] + m * unbiased);
  }
  return {mean, 1.0 / sqrt(var + double(eps))};
}

// A channel's normalisation as the map y = alpha * x + beta that every forward applies (alpha =
// gamma * invstd, beta = bias - mean * alpha, in double, then rounded), so that the eval-mode
// convolution epilogue (kernels/conv2d.h, Conv2dEpilogue) gives the BatchNorm kernels' bits.
struct BatchNormAffine {
  float alpha, beta;
};
NV_HD BatchNormAffine batch_norm_affine(double mean, double invstd, const float* weight,
                                        const float* bias, int64_t c) {
  const double gamma = weight ? weight[c] : 1.0, shift = bias ? bias[c] : 0.0;
  const double alpha = invstd * gamma;
  return {static_cast<float>(alpha), static_cast<float>(shift - mean * alpha)};
}

// Eval mode: 1 / std from a running variance.
NV_HD double batch_norm_eval_invstd(float running_var, float eps) {
  return 1.0 / sqrt(double(running_var) + double(eps));
}

}  // namespace nextvit::kernels
