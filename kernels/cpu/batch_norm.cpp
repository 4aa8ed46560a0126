// CPU batch normalisation (kernels/batch_norm.h). Work is split over channels: each thread owns
// a contiguous range of channels and walks, for each, the N runs of S contiguous values at
// x + (n * C + c) * S, so no two threads touch the same output and no reduction crosses
// threads. Per-channel sums are accumulated in double, one partial sum per lane across all of
// the channel's runs (lane_sums.h: reassociation we allow explicitly, unlike -ffast-math).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/batch_norm.h"
#include "kernels/batch_norm_stats.h"
#include "kernels/cpu/lane_sums.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/relu_mask.h"

namespace nextvit::kernels::cpu {
namespace {

// Sums of d and d^2, d = x - shift, over channel c. The shift (the channel's first value)
// keeps E[d^2] - E[d]^2 free of cancellation when |mean| >> std.
void channel_moments(const BatchNormShape& s, int64_t c, const float* x, double shift, double& s1,
                     double& s2) {
  LaneSums2 acc;
  for (int64_t n = 0; n < s.batch; ++n) {
    const float* p = x + (n * s.channels + c) * s.spatial;
    acc.add_run(s.spatial, [&](int64_t i, double& u, double& v) {
      u = double(p[i]) - shift;
      v = u * u;
    });
  }
  s1 = acc.sum_a();
  s2 = acc.sum_b();
}

// Sums of g and g * (x - mean) over channel c, g the output gradient (masked where the
// ReLU output y_relu is zero, when given).
void channel_grad_sums(const BatchNormShape& s, int64_t c, const float* x, const float* dy,
                       const float* y_relu, float mean, double& sum_dy, double& sum_dy_xmu) {
  LaneSums2 acc;
  for (int64_t n = 0; n < s.batch; ++n) {
    const int64_t off = (n * s.channels + c) * s.spatial;
    const float *xp = x + off, *gp = dy + off;
    if (y_relu == nullptr) {
      acc.add_run(s.spatial, [&](int64_t i, double& u, double& v) {
        u = gp[i];
        v = u * double(xp[i] - mean);
      });
    } else {
      const float* yp = y_relu + off;
      acc.add_run(s.spatial, [&](int64_t i, double& u, double& v) {
        u = relu_mask(gp[i], yp[i]);
        v = u * double(xp[i] - mean);
      });
    }
  }
  sum_dy = acc.sum_a();
  sum_dy_xmu = acc.sum_b();
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
  const BatchNormAffine a = batch_norm_affine(mean, invstd, weight, bias, c);
  transform_channel(s, c, x, a.alpha, a.beta, relu, y);
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
      channel_moments(s, c, x, shift, s1, s2);
      const BatchNormChannelStats st =
          finish_batch_norm_stats(shift, s1, s2, M, eps, momentum, running_mean, running_var, c);
      normalize_channel(s, c, x, st.mean, st.invstd, weight, bias, relu, y, save_mean, save_invstd);
    }
  });
}

void batch_norm_forward_eval(const BatchNormShape& s, const float* x, const float* weight,
                             const float* bias, const float* running_mean, const float* running_var,
                             float eps, bool relu, float* y, float* save_mean, float* save_invstd) {
  parallel_for(s.channels, grain_for(s.count()), [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const double mean = running_mean[c];
      const double invstd = batch_norm_eval_invstd(running_var[c], eps);
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
        channel_grad_sums(s, c, x, dy, y_relu, mean, sum_dy, sum_dy_xmu);
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
