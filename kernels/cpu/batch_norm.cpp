// CPU batch normalisation (kernels/batch_norm.h). Work is split over channels: each thread owns
// a contiguous range of channels and walks, for each, the N runs of S contiguous values at
// x + (n * C + c) * S, so no two threads touch the same output and no reduction crosses
// threads. Per-channel sums are accumulated in double; `omp simd` reductions let the compiler
// keep one partial sum per vector lane (reassociation we allow explicitly, unlike -ffast-math).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/batch_norm.h"
#include "kernels/cpu/parallel.h"

namespace nextvit::kernels::cpu {
namespace {

// Adds sum(d) and sum(d^2), d = p[i] - shift, over len values to s1 and s2. The shift (the
// channel's first value) keeps E[d^2] - E[d]^2 free of cancellation when |mean| >> std.
void accumulate_moments(const float* p, int64_t len, double shift, double& s1, double& s2) {
  double a1 = 0.0, a2 = 0.0;
#pragma omp simd reduction(+ : a1, a2)
  for (int64_t i = 0; i < len; ++i) {
    const double d = double(p[i]) - shift;
    a1 += d;
    a2 += d * d;
  }
  s1 += a1;
  s2 += a2;
}

// dy where the ReLU output y is > 0, else +0 (a select, as PyTorch's threshold_backward: a NaN
// in dy stays out of masked cells). Done on the bits so that the loops using it vectorise: a
// float select (or branch) in a loop is not if-converted under -ftrapping-math, and a
// data-dependent branch on the sign of y mispredicts half the time.
inline float relu_mask(float dy, float y) {
  uint32_t bits;
  std::memcpy(&bits, &dy, sizeof bits);
  bits &= 0u - static_cast<uint32_t>(y > 0.0f);
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

// Adds sum(g) and sum(g * (x - mean)), g the (masked) output gradient, over one run.
void accumulate_grad_sums(const float* x, const float* dy, const float* y_relu, int64_t len,
                          float mean, double& sum_dy, double& sum_dy_xmu) {
  double a1 = 0.0, a2 = 0.0;
  if (y_relu == nullptr) {
#pragma omp simd reduction(+ : a1, a2)
    for (int64_t i = 0; i < len; ++i) {
      const double g = dy[i];
      a1 += g;
      a2 += g * double(x[i] - mean);
    }
  } else {
#pragma omp simd reduction(+ : a1, a2)
    for (int64_t i = 0; i < len; ++i) {
      const double g = relu_mask(dy[i], y_relu[i]);
      a1 += g;
      a2 += g * double(x[i] - mean);
    }
  }
  sum_dy += a1;
  sum_dy_xmu += a2;
}

// y = x * alpha + beta over channel c, clamped at zero when relu. PyTorch folds the affine map
// the same way (alpha = invstd * gamma, beta = bias - mean * alpha), so results match bit for
// bit up to the statistics.
void transform_channel(const BatchNormShape& s, int64_t c, const float* x, float alpha, float beta,
                       bool relu, float* y) {
  const int64_t S = s.spatial, C = s.channels;
  for (int64_t n = 0; n < s.batch; ++n) {
    const float* xp = x + (n * C + c) * S;
    float* yp = y + (n * C + c) * S;
    if (relu) {
      for (int64_t i = 0; i < S; ++i) {
        const float v = xp[i] * alpha + beta;
        yp[i] = v > 0.0f ? v : 0.0f;
      }
    } else {
      for (int64_t i = 0; i < S; ++i) yp[i] = xp[i] * alpha + beta;
    }
  }
}

// Both forwards end alike once a channel's mean and 1/std are known: keep them for the
// backward, then y = relu?(alpha x + beta) with alpha = gamma/std, beta = bias - mean alpha.
void normalize_channel(const BatchNormShape& s, int64_t c, const float* x, double mean,
                       double invstd, const float* weight, const float* bias, bool relu, float* y,
                       float* save_mean, float* save_invstd) {
  save_mean[c] = static_cast<float>(mean);
  save_invstd[c] = static_cast<float>(invstd);
  const double gamma = weight ? weight[c] : 1.0, beta = bias ? bias[c] : 0.0;
  const double alpha = invstd * gamma;
  transform_channel(s, c, x, static_cast<float>(alpha), static_cast<float>(beta - mean * alpha),
                    relu, y);
}

}  // namespace

void batch_norm_forward_train(const BatchNormShape& s, const float* x, const float* weight,
                              const float* bias, float momentum, float eps, float* running_mean,
                              float* running_var, bool relu, float* y, float* save_mean,
                              float* save_invstd) {
  const int64_t S = s.spatial, C = s.channels, M = s.count();
  parallel_for(C, grain_for(s.count()), [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const double shift = M > 0 ? double(x[c * S]) : 0.0;
      double s1 = 0.0, s2 = 0.0;
      for (int64_t n = 0; n < s.batch; ++n)
        accumulate_moments(x + (n * C + c) * S, S, shift, s1, s2);
      const double mean_d = s1 / double(M);
      const double var = std::max(0.0, s2 / double(M) - mean_d * mean_d);  // biased
      const double mean = shift + mean_d;
      const double invstd = 1.0 / std::sqrt(var + double(eps));
      if (running_mean != nullptr) {
        const double m = momentum;
        running_mean[c] = static_cast<float>((1.0 - m) * running_mean[c] + m * mean);
        const double unbiased = M > 1 ? var * double(M) / double(M - 1) : var;
        running_var[c] = static_cast<float>((1.0 - m) * running_var[c] + m * unbiased);
      }
      normalize_channel(s, c, x, mean, invstd, weight, bias, relu, y, save_mean, save_invstd);
    }
  });
}

void batch_norm_forward_eval(const BatchNormShape& s, const float* x, const float* weight,
                             const float* bias, const float* running_mean, const float* running_var,
                             float eps, bool relu, float* y, float* save_mean, float* save_invstd) {
  parallel_for(s.channels, grain_for(s.count()), [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const double mean = running_mean[c];
      const double invstd = 1.0 / std::sqrt(double(running_var[c]) + double(eps));
      normalize_channel(s, c, x, mean, invstd, weight, bias, relu, y, save_mean, save_invstd);
    }
  });
}

// Derivation: docs/derivations.md#batchnorm-backward-train-mode
void batch_norm_backward(const BatchNormShape& s, const float* x, const float* dy,
                         const float* y_relu, const float* weight, const float* save_mean,
                         const float* save_invstd, bool training, float* dx, float* dweight,
                         float* dbias) {
  const int64_t S = s.spatial, C = s.channels, M = s.count();
  parallel_for(C, grain_for(s.count()), [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const float mean = save_mean[c];
      const double invstd = save_invstd[c];
      const double gamma = weight ? weight[c] : 1.0;
      // The channel sums are needed by dweight and dbias, and by dx in training mode only.
      double sum_dy = 0.0, sum_dy_xmu = 0.0;
      if (dweight != nullptr || dbias != nullptr || (training && dx != nullptr)) {
        for (int64_t n = 0; n < s.batch; ++n) {
          const int64_t off = (n * C + c) * S;
          accumulate_grad_sums(x + off, dy + off, y_relu ? y_relu + off : nullptr, S, mean, sum_dy,
                               sum_dy_xmu);
        }
      }
      if (dweight != nullptr) dweight[c] = static_cast<float>(sum_dy_xmu * invstd);
      if (dbias != nullptr) dbias[c] = static_cast<float>(sum_dy);
      if (dx == nullptr) continue;
      // dx = gamma * invstd * (g - grad_mean - (x - mean) * proj): the mean terms of training
      // mode come from the batch statistics depending on every x of the channel.
      const float scale = static_cast<float>(gamma * invstd);
      const float grad_mean = training ? static_cast<float>(sum_dy / double(M)) : 0.0f;
      const float proj =
          training ? static_cast<float>(sum_dy_xmu / double(M) * invstd * invstd) : 0.0f;
      for (int64_t n = 0; n < s.batch; ++n) {
        const int64_t off = (n * C + c) * S;
        const float* xp = x + off;
        const float* gp = dy + off;
        const float* yp = y_relu ? y_relu + off : nullptr;
        float* dxp = dx + off;
        if (yp == nullptr) {
          for (int64_t i = 0; i < S; ++i) {
            dxp[i] = (gp[i] - grad_mean - (xp[i] - mean) * proj) * scale;
          }
        } else {
          for (int64_t i = 0; i < S; ++i) {
            dxp[i] = (relu_mask(gp[i], yp[i]) - grad_mean - (xp[i] - mean) * proj) * scale;
          }
        }
      }
    }
  });
}

}  // namespace nextvit::kernels::cpu
