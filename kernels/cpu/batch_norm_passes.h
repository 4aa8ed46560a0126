#pragma once
// The passes of the BatchNorm kernels over one block (channel_blocks.h): for each of the N
// images a contiguous run of L floats at x + n * stride, the same L positions in every image.
// Per-channel constants come expanded to one value per position of the run, so every loop is a
// plain vertical loop over j that vectorises whatever S is (S = 1 or 4 included).
//
// The sums are kept per position in double: a[j] += the terms of position j over the images,
// four images at a time, added as ((t0 + t1) + (t2 + t3)) and then to a[j]; the caller adds each
// channel's positions up afterwards. This is a fixed order that depends on N alone, and every
// operation is a vertical one: no reassociation by the compiler is involved.
#include <cstdint>

#include "kernels/cpu/relu_mask.h"

namespace nextvit::kernels::cpu {

// a[j] += sum_n d, b[j] += sum_n d^2 with d = x[n][j] - shift[j] (a, b zeroed by the caller).
inline void position_moments(const float* x, int64_t stride, int64_t N, int64_t L,
                             const double* __restrict shift, double* __restrict a,
                             double* __restrict b) {
  int64_t n = 0;
  for (; n + 4 <= N; n += 4) {
    const float *p0 = x + n * stride, *p1 = p0 + stride, *p2 = p1 + stride, *p3 = p2 + stride;
    for (int64_t j = 0; j < L; ++j) {
      const double d0 = double(p0[j]) - shift[j], d1 = double(p1[j]) - shift[j];
      const double d2 = double(p2[j]) - shift[j], d3 = double(p3[j]) - shift[j];
      a[j] += (d0 + d1) + (d2 + d3);
      b[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
    }
  }
  for (; n < N; ++n) {
    const float* p = x + n * stride;
    for (int64_t j = 0; j < L; ++j) {
      const double d = double(p[j]) - shift[j];
      a[j] += d;
      b[j] += d * d;
    }
  }
}

// y[n][j] = x[n][j] * alpha[j] + beta[j], clamped at zero when relu.
inline void position_affine(const float* x, float* y, int64_t stride, int64_t N, int64_t L,
                            const float* __restrict alpha, const float* __restrict beta,
                            bool relu) {
  for (int64_t n = 0; n < N; ++n) {
    const float* __restrict xp = x + n * stride;
    float* __restrict yp = y + n * stride;
    if (relu) {
      for (int64_t j = 0; j < L; ++j) {
        const float v = xp[j] * alpha[j] + beta[j];
        yp[j] = v > 0.0f ? v : 0.0f;
      }
    } else {
      for (int64_t j = 0; j < L; ++j) yp[j] = xp[j] * alpha[j] + beta[j];
    }
  }
}

// The output gradient g = dy, masked where the fused ReLU's output y is zero when y is given.
template <bool kRelu>
inline float masked_grad(const float* dy, const float* y, int64_t j) {
  if constexpr (kRelu) {
    return relu_mask(dy[j], y[j]);
  } else {
    (void)y;
    return dy[j];
  }
}

// a[j] += sum_n g, b[j] += sum_n g * (x - mean[j]), g = masked_grad (a, b zeroed by the caller).
template <bool kRelu>
void position_grad_sums(const float* x, const float* dy, const float* y, int64_t stride, int64_t N,
                        int64_t L, const float* __restrict mean, double* __restrict a,
                        double* __restrict b) {
  int64_t n = 0;
  for (; n + 4 <= N; n += 4) {
    const int64_t o0 = n * stride, o1 = o0 + stride, o2 = o1 + stride, o3 = o2 + stride;
    for (int64_t j = 0; j < L; ++j) {
      const double g0 = masked_grad<kRelu>(dy + o0, y + o0, j);
      const double g1 = masked_grad<kRelu>(dy + o1, y + o1, j);
      const double g2 = masked_grad<kRelu>(dy + o2, y + o2, j);
      const double g3 = masked_grad<kRelu>(dy + o3, y + o3, j);
      a[j] += (g0 + g1) + (g2 + g3);
      b[j] += (g0 * double(x[o0 + j] - mean[j]) + g1 * double(x[o1 + j] - mean[j])) +
              (g2 * double(x[o2 + j] - mean[j]) + g3 * double(x[o3 + j] - mean[j]));
    }
  }
  for (; n < N; ++n) {
    const int64_t o = n * stride;
    for (int64_t j = 0; j < L; ++j) {
      const double g = masked_grad<kRelu>(dy + o, y + o, j);
      a[j] += g;
      b[j] += g * double(x[o + j] - mean[j]);
    }
  }
}

// Per-position constants of the input gradient (BatchNorm backward, see batch_norm.cpp).
struct GradInputConstants {
  const float *mean, *grad_mean, *proj, *scale;
};

// dx[n][j] = (g - grad_mean[j] - (x - mean[j]) * proj[j]) * scale[j], g = masked_grad.
template <bool kRelu>
void position_grad_input(const float* x, const float* dy, const float* y, float* dx, int64_t stride,
                         int64_t N, int64_t L, const GradInputConstants& k) {
  const float* __restrict mean = k.mean, * __restrict gm = k.grad_mean;
  const float* __restrict proj = k.proj, * __restrict scale = k.scale;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t o = n * stride;
    const float* __restrict xp = x + o;
    float* __restrict dxp = dx + o;
    for (int64_t j = 0; j < L; ++j) {
      const float g = masked_grad<kRelu>(dy + o, y + o, j);
      dxp[j] = (g - gm[j] - (xp[j] - mean[j]) * proj[j]) * scale[j];
    }
  }
}

}  // namespace nextvit::kernels::cpu
