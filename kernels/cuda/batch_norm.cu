// Batch normalisation (+ ReLU) on the GPU (kernels/batch_norm.h). Channel c of an (N, C, S)
// buffer is N runs of S contiguous values; it is reduced over those N * S = M values.
//
// Training forward, in two passes over x (the fewest a two-pass formula allows):
//   1. statistics: grid (splits, C); block (split, c) sums d = x - shift and d^2 over its slice
//      of the channel in double (shift = the channel's first value, so that E[d^2] - E[d]^2
//      does not cancel when |mean| >> std, as the CPU kernel), and writes one partial pair.
//      A one-block-per-channel kernel adds the partials in split order (deterministic) and
//      computes mean and invstd, updates the running statistics, and stores per channel the
//      affine map y = x * alpha + beta.
//   2. apply: one elementwise pass y = max(x * alpha[c] + beta[c], 0), 16-byte vectors when a
//      run's length allows.
// Backward, also two passes: channel sums of g and g * (x - mean) (g = dy masked by y > 0 when
// the forward fused a ReLU: the output is the mask, no separate mask tensor), finalised into
// dweight, dbias and four per-channel coefficients, then dx elementwise.
// Small channels (M <= 4096: late stages, small batches) take a one-kernel path instead: one
// block per channel holds the channel's values in registers (16 per thread), reduces, and
// writes y (or dx) from the registers: x is read once and there is one launch, not three.
// Sums in double throughout, as the CPU kernel; the per-element maps in float with the CPU's
// formulas, so the devices agree to float rounding.
// Explained: docs/kernels/batch_norm_relu_forward.md, docs/kernels/batch_norm_relu_backward.md
#include <cmath>

#include "kernels/batch_norm.h"
#include "kernels/batch_norm_stats.h"
#include "kernels/cuda/device_props.h"
#include "kernels/cuda/launch.cuh"

namespace nextvit::kernels::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kRegValues = 16;                    // values per thread on the one-kernel path
constexpr int64_t kSmallM = kBlock * kRegValues;  // channels up to this size take it

struct Shape3 {
  int N, C, S, M;  // M = N * S (checked to fit in int)
};

Shape3 shape3(const BatchNormShape& s) {
  NV_CHECK(s.batch * s.channels * s.spatial < (int64_t(1) << 31),
           "batch_norm: ({}, {}, {}) has too many elements for the CUDA kernels", s.batch,
           s.channels, s.spatial);
  return {int(s.batch), int(s.channels), int(s.spatial), int(s.batch * s.spatial)};
}

// Value q (0 <= q < M) of channel c: run q / S, position q % S.
__device__ __forceinline__ int64_t offset(const Shape3& z, int c, int q) {
  const int n = q / z.S;
  return (int64_t(n) * z.C + c) * z.S + (q - n * z.S);
}

// Sum over the block of two doubles; every thread gets the results.
__device__ __forceinline__ void block_sum2(double& a, double& b) {
  __shared__ double pa[kBlock / 32], pb[kBlock / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(0xffffffffu, a, o);
    b += __shfl_xor_sync(0xffffffffu, b, o);
  }
  __syncthreads();
  if (threadIdx.x % 32 == 0) {
    pa[threadIdx.x / 32] = a;
    pb[threadIdx.x / 32] = b;
  }
  __syncthreads();
  a = 0.0;
  b = 0.0;
#pragma unroll
  for (int w = 0; w < kBlock / 32; ++w) {
    a += pa[w];
    b += pb[w];
  }
}

// Walks the values [q0, q1) of channel c with stride kBlock starting at q0 + threadIdx.x,
// calling f(offset) for each. The (run, position) pair is advanced by constant steps instead of
// divided out per value.
template <typename F>
__device__ __forceinline__ void walk(const Shape3& z, int c, int q0, int q1, const F& f) {
  int q = q0 + threadIdx.x;
  if (q >= q1) return;
  int n = q / z.S, p = q - n * z.S;
  const int dn = kBlock / z.S, dp = kBlock % z.S;
  for (; q < q1; q += kBlock) {
    f((int64_t(n) * z.C + c) * z.S + p);
    p += dp;
    n += dn;
    if (p >= z.S) {
      p -= z.S;
      ++n;
    }
  }
}

// Per-channel results of the statistics, as the CPU kernel computes them.
struct ChannelStats {
  float mean, invstd, alpha, beta;
};

__device__ ChannelStats finish_stats(double shift, double s1, double s2, int M, float eps,
                                     float momentum, const float* weight, const float* bias,
                                     float* running_mean, float* running_var, int c) {
  const BatchNormChannelStats st =
      finish_batch_norm_stats(shift, s1, s2, M, eps, momentum, running_mean, running_var, c);
  const double mean = st.mean, invstd = st.invstd;
  const double gamma = weight ? weight[c] : 1.0, beta = bias ? bias[c] : 0.0;
  const double alpha = invstd * gamma;
  return {static_cast<float>(mean), static_cast<float>(invstd), static_cast<float>(alpha),
          static_cast<float>(beta - mean * alpha)};
}

// ---- training forward, multi-block path ------------------------------------------------------

__global__ void __launch_bounds__(kBlock)
    stats_partial_kernel(Shape3 z, int splits, const float* __restrict__ x,
                         double2* __restrict__ partial) {
  const int split = blockIdx.x, c = blockIdx.y;
  const int chunk = (z.M + splits - 1) / splits;
  const int q0 = split * chunk, q1 = min(z.M, q0 + chunk);
  const double shift = x[int64_t(c) * z.S];
  double s1 = 0.0, s2 = 0.0;
  walk(z, c, q0, q1, [&](int64_t i) {
    const double d = double(x[i]) - shift;
    s1 += d;
    s2 += d * d;
  });
  block_sum2(s1, s2);
  if (threadIdx.x == 0) partial[int64_t(c) * splits + split] = make_double2(s1, s2);
}

// One thread per channel: the partials in split order.
__global__ void stats_finish_kernel(Shape3 z, int splits, const float* __restrict__ x,
                                    const double2* __restrict__ partial, const float* weight,
                                    const float* bias, float momentum, float eps,
                                    float* running_mean, float* running_var,
                                    float* __restrict__ save_mean, float* __restrict__ save_invstd,
                                    float2* __restrict__ affine) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= z.C) return;
  double s1 = 0.0, s2 = 0.0;
  for (int b = 0; b < splits; ++b) {
    const double2 p = partial[int64_t(c) * splits + b];
    s1 += p.x;
    s2 += p.y;
  }
  const ChannelStats st = finish_stats(x[int64_t(c) * z.S], s1, s2, z.M, eps, momentum, weight,
                                       bias, running_mean, running_var, c);
  save_mean[c] = st.mean;
  save_invstd[c] = st.invstd;
  affine[c] = make_float2(st.alpha, st.beta);
}

// y = x * alpha[c] + beta[c] (then ReLU). Vec = 4 when S % 4 == 0 (a vector never straddles two
// runs, and every run starts 16-byte aligned); one division per vector finds the channel.
template <bool Relu, int Vec>
__global__ void __launch_bounds__(kBlock)
    apply_kernel(Shape3 z, const float* __restrict__ x, const float2* __restrict__ affine,
                 float* __restrict__ y) {
  const int64_t total = int64_t(z.N) * z.C * z.S / Vec;
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < total;
       v += int64_t(gridDim.x) * blockDim.x) {
    // 32-bit index math: shape3() checked that N * C * S < 2^31.
    const int c = int(unsigned(v * Vec) / unsigned(z.S) % unsigned(z.C));
    const float2 ab = affine[c];
    if constexpr (Vec == 4) {
      float4 a = reinterpret_cast<const float4*>(x)[v];
      a.x = a.x * ab.x + ab.y;
      a.y = a.y * ab.x + ab.y;
      a.z = a.z * ab.x + ab.y;
      a.w = a.w * ab.x + ab.y;
      if (Relu) {
        a.x = a.x > 0.0f ? a.x : 0.0f;
        a.y = a.y > 0.0f ? a.y : 0.0f;
        a.z = a.z > 0.0f ? a.z : 0.0f;
        a.w = a.w > 0.0f ? a.w : 0.0f;
      }
      reinterpret_cast<float4*>(y)[v] = a;
    } else {
      const float t = x[v] * ab.x + ab.y;
      y[v] = Relu ? (t > 0.0f ? t : 0.0f) : t;
    }
  }
}

// ---- training forward, one block per channel -------------------------------------------------

template <bool Relu>
__global__ void __launch_bounds__(kBlock)
    forward_small_kernel(Shape3 z, const float* __restrict__ x, const float* weight,
                         const float* bias, float momentum, float eps, float* running_mean,
                         float* running_var, float* __restrict__ y, float* __restrict__ save_mean,
                         float* __restrict__ save_invstd) {
  const int c = blockIdx.x;
  const double shift = x[int64_t(c) * z.S];
  float v[kRegValues];
  double s1 = 0.0, s2 = 0.0;
#pragma unroll
  for (int k = 0; k < kRegValues; ++k) {
    const int q = threadIdx.x + k * kBlock;
    v[k] = q < z.M ? x[offset(z, c, q)] : 0.0f;
    if (q < z.M) {
      const double d = double(v[k]) - shift;
      s1 += d;
      s2 += d * d;
    }
  }
  block_sum2(s1, s2);
  __shared__ float2 ab;
  if (threadIdx.x == 0) {
    const ChannelStats st =
        finish_stats(shift, s1, s2, z.M, eps, momentum, weight, bias, running_mean, running_var, c);
    save_mean[c] = st.mean;
    save_invstd[c] = st.invstd;
    ab = make_float2(st.alpha, st.beta);
  }
  __syncthreads();
  const float2 a = ab;
#pragma unroll
  for (int k = 0; k < kRegValues; ++k) {
    const int q = threadIdx.x + k * kBlock;
    if (q < z.M) {
      const float t = v[k] * a.x + a.y;
      y[offset(z, c, q)] = Relu ? (t > 0.0f ? t : 0.0f) : t;
    }
  }
}

// ---- eval forward ---------------------------------------------------------------------------

__global__ void eval_prepare_kernel(int C, const float* weight, const float* bias,
                                    const float* __restrict__ running_mean,
                                    const float* __restrict__ running_var, float eps,
                                    float* __restrict__ save_mean, float* __restrict__ save_invstd,
                                    float2* __restrict__ affine) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double mean = running_mean[c];
  const double invstd = 1.0 / sqrt(double(running_var[c]) + double(eps));
  save_mean[c] = running_mean[c];
  save_invstd[c] = static_cast<float>(invstd);
  const double gamma = weight ? weight[c] : 1.0, beta = bias ? bias[c] : 0.0;
  const double alpha = invstd * gamma;
  affine[c] = make_float2(static_cast<float>(alpha), static_cast<float>(beta - mean * alpha));
}

// ---- backward -------------------------------------------------------------------------------

// Derivation: docs/derivations.md#batchnorm-backward-train-mode
// Per-channel coefficients of dx = (g - grad_mean - (x - mean) * proj) * scale.
struct DxCoef {
  float mean, grad_mean, proj, scale;
};

__device__ DxCoef finish_grads(double sum_dy, double sum_dy_xmu, int M, float mean, float invstd_f,
                               const float* weight, bool training, float* dweight, float* dbias,
                               int c) {
  const double invstd = invstd_f;
  const double gamma = weight ? weight[c] : 1.0;
  if (dweight != nullptr) dweight[c] = static_cast<float>(sum_dy_xmu * invstd);
  if (dbias != nullptr) dbias[c] = static_cast<float>(sum_dy);
  DxCoef k;
  k.mean = mean;
  k.scale = static_cast<float>(gamma * invstd);
  k.grad_mean = training ? static_cast<float>(sum_dy / double(M)) : 0.0f;
  k.proj = training ? static_cast<float>(sum_dy_xmu / double(M) * invstd * invstd) : 0.0f;
  return k;
}

__device__ __forceinline__ float masked(const float* dy, const float* y_relu, int64_t i) {
  return (y_relu == nullptr || y_relu[i] > 0.0f) ? dy[i] : 0.0f;
}

__global__ void __launch_bounds__(kBlock)
    grad_partial_kernel(Shape3 z, int splits, const float* __restrict__ x,
                        const float* __restrict__ dy, const float* __restrict__ y_relu,
                        const float* __restrict__ save_mean, double2* __restrict__ partial) {
  const int split = blockIdx.x, c = blockIdx.y;
  const int chunk = (z.M + splits - 1) / splits;
  const int q0 = split * chunk, q1 = min(z.M, q0 + chunk);
  const float mean = save_mean[c];
  double s1 = 0.0, s2 = 0.0;
  walk(z, c, q0, q1, [&](int64_t i) {
    const double g = masked(dy, y_relu, i);
    s1 += g;
    s2 += g * double(x[i] - mean);
  });
  block_sum2(s1, s2);
  if (threadIdx.x == 0) partial[int64_t(c) * splits + split] = make_double2(s1, s2);
}

__global__ void grad_finish_kernel(Shape3 z, int splits, const double2* __restrict__ partial,
                                   const float* weight, const float* __restrict__ save_mean,
                                   const float* __restrict__ save_invstd, bool training,
                                   float* dweight, float* dbias, DxCoef* __restrict__ coef) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= z.C) return;
  double s1 = 0.0, s2 = 0.0;
  if (partial != nullptr) {
    for (int b = 0; b < splits; ++b) {
      const double2 p = partial[int64_t(c) * splits + b];
      s1 += p.x;
      s2 += p.y;
    }
  }
  coef[c] =
      finish_grads(s1, s2, z.M, save_mean[c], save_invstd[c], weight, training, dweight, dbias, c);
}

__global__ void __launch_bounds__(kBlock)
    dx_kernel(Shape3 z, const float* __restrict__ x, const float* __restrict__ dy,
              const float* __restrict__ y_relu, const DxCoef* __restrict__ coef,
              float* __restrict__ dx) {
  const int64_t total = int64_t(z.N) * z.C * z.S;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const DxCoef k = coef[unsigned(i) / unsigned(z.S) % unsigned(z.C)];  // N * C * S < 2^31
    dx[i] = (masked(dy, y_relu, i) - k.grad_mean - (x[i] - k.mean) * k.proj) * k.scale;
  }
}

__global__ void __launch_bounds__(kBlock)
    backward_small_kernel(Shape3 z, const float* __restrict__ x, const float* __restrict__ dy,
                          const float* __restrict__ y_relu, const float* weight,
                          const float* __restrict__ save_mean,
                          const float* __restrict__ save_invstd, bool training,
                          float* __restrict__ dx, float* dweight, float* dbias) {
  const int c = blockIdx.x;
  const float mean = save_mean[c];
  float xv[kRegValues], gv[kRegValues];
  double s1 = 0.0, s2 = 0.0;
#pragma unroll
  for (int k = 0; k < kRegValues; ++k) {
    const int q = threadIdx.x + k * kBlock;
    xv[k] = 0.0f;
    gv[k] = 0.0f;
    if (q < z.M) {
      const int64_t i = offset(z, c, q);
      xv[k] = x[i];
      gv[k] = masked(dy, y_relu, i);
      s1 += gv[k];
      s2 += double(gv[k]) * double(xv[k] - mean);
    }
  }
  block_sum2(s1, s2);
  __shared__ DxCoef shared_coef;
  if (threadIdx.x == 0) {
    shared_coef =
        finish_grads(s1, s2, z.M, mean, save_invstd[c], weight, training, dweight, dbias, c);
  }
  __syncthreads();
  if (dx == nullptr) return;
  const DxCoef k = shared_coef;
#pragma unroll
  for (int j = 0; j < kRegValues; ++j) {
    const int q = threadIdx.x + j * kBlock;
    if (q < z.M) dx[offset(z, c, q)] = (gv[j] - k.grad_mean - (xv[j] - k.mean) * k.proj) * k.scale;
  }
}

// ---- launch helpers -------------------------------------------------------------------------

// Blocks per channel for the partial-sum kernels: about eight blocks per SM over the whole
// grid, each with at least 2048 values (8 per thread).
int splits_for(const Shape3& z) {
  const int target = (8 * multiprocessor_count() + z.C - 1) / z.C;
  const int most = (z.M + 2047) / 2048;
  return std::max(1, std::min(target, most));
}

void launch_apply(const Shape3& z, const float* x, const float2* affine, bool relu, float* y) {
  const bool vec = z.S % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(y) % 16 == 0;
  const int64_t n = int64_t(z.N) * z.C * z.S / (vec ? 4 : 1);
  const int grid = grid_size(n, kBlock);
  if (vec) {
    if (relu) {
      NV_LAUNCH(grid, kBlock, 0, stream(), apply_kernel<true, 4>)(z, x, affine, y);
    } else {
      NV_LAUNCH(grid, kBlock, 0, stream(), apply_kernel<false, 4>)(z, x, affine, y);
    }
  } else if (relu) {
    NV_LAUNCH(grid, kBlock, 0, stream(), apply_kernel<true, 1>)(z, x, affine, y);
  } else {
    NV_LAUNCH(grid, kBlock, 0, stream(), apply_kernel<false, 1>)(z, x, affine, y);
  }
  NV_CUDA_CHECK_LAUNCH("batch_norm apply over ({}, {}, {})", z.N, z.C, z.S);
}

}  // namespace

void batch_norm_forward_train(const BatchNormShape& s, const float* x, const float* weight,
                              const float* bias, float momentum, float eps, float* running_mean,
                              float* running_var, bool relu, float* y, float* save_mean,
                              float* save_invstd) {
  const Shape3 z = shape3(s);
  if (z.C == 0 || z.M == 0) return;
  NV_CHECK(z.C <= 65535, "batch_norm: {} channels exceed the CUDA grid", z.C);
  if (z.M <= kSmallM) {
    if (relu) {
      NV_LAUNCH(z.C, kBlock, 0, stream(), forward_small_kernel<true>)
      (z, x, weight, bias, momentum, eps, running_mean, running_var, y, save_mean, save_invstd);
    } else {
      NV_LAUNCH(z.C, kBlock, 0, stream(), forward_small_kernel<false>)
      (z, x, weight, bias, momentum, eps, running_mean, running_var, y, save_mean, save_invstd);
    }
    NV_CUDA_CHECK_LAUNCH("batch_norm training forward over ({}, {}, {})", z.N, z.C, z.S);
    return;
  }
  const int splits = splits_for(z);
  // Scratch: the partial sums, then the per-channel affine maps.
  char* ws = static_cast<char*>(
      cuda_rt::workspace(sizeof(double2) * size_t(z.C) * splits + sizeof(float2) * z.C));
  double2* partial = reinterpret_cast<double2*>(ws);
  float2* affine = reinterpret_cast<float2*>(ws + sizeof(double2) * size_t(z.C) * splits);
  NV_LAUNCH(dim3(splits, z.C), kBlock, 0, stream(), stats_partial_kernel)(z, splits, x, partial);
  NV_CUDA_CHECK_LAUNCH("batch_norm statistics over ({}, {}, {})", z.N, z.C, z.S);
  NV_LAUNCH((z.C + 127) / 128, 128, 0, stream(), stats_finish_kernel)
  (z, splits, x, partial, weight, bias, momentum, eps, running_mean, running_var, save_mean,
   save_invstd, affine);
  NV_CUDA_CHECK_LAUNCH("batch_norm statistics of {} channels", z.C);
  launch_apply(z, x, affine, relu, y);
}

void batch_norm_forward_eval(const BatchNormShape& s, const float* x, const float* weight,
                             const float* bias, const float* running_mean, const float* running_var,
                             float eps, bool relu, float* y, float* save_mean, float* save_invstd) {
  const Shape3 z = shape3(s);
  if (z.C == 0) return;
  float2* affine = static_cast<float2*>(cuda_rt::workspace(sizeof(float2) * z.C));
  NV_LAUNCH((z.C + 127) / 128, 128, 0, stream(), eval_prepare_kernel)
  (z.C, weight, bias, running_mean, running_var, eps, save_mean, save_invstd, affine);
  NV_CUDA_CHECK_LAUNCH("batch_norm eval statistics of {} channels", z.C);
  if (z.M == 0) return;
  launch_apply(z, x, affine, relu, y);
}

void batch_norm_backward(const BatchNormShape& s, const float* x, const float* dy,
                         const float* y_relu, const float* weight, const float* save_mean,
                         const float* save_invstd, bool training, float* dx, float* dweight,
                         float* dbias) {
  const Shape3 z = shape3(s);
  if (z.C == 0) return;
  NV_CHECK(z.C <= 65535, "batch_norm backward: {} channels exceed the CUDA grid", z.C);
  if (z.M > 0 && z.M <= kSmallM) {
    NV_LAUNCH(z.C, kBlock, 0, stream(), backward_small_kernel)
    (z, x, dy, y_relu, weight, save_mean, save_invstd, training, dx, dweight, dbias);
    NV_CUDA_CHECK_LAUNCH("batch_norm backward over ({}, {}, {})", z.N, z.C, z.S);
    return;
  }
  // The channel sums feed dweight, dbias and, in training, dx.
  const bool sums =
      z.M > 0 && (dweight != nullptr || dbias != nullptr || (training && dx != nullptr));
  const int splits = sums ? splits_for(z) : 0;
  char* ws = static_cast<char*>(
      cuda_rt::workspace(sizeof(double2) * size_t(z.C) * splits + sizeof(DxCoef) * z.C));
  double2* partial = sums ? reinterpret_cast<double2*>(ws) : nullptr;
  DxCoef* coef = reinterpret_cast<DxCoef*>(ws + sizeof(double2) * size_t(z.C) * splits);
  if (sums) {
    NV_LAUNCH(dim3(splits, z.C), kBlock, 0, stream(), grad_partial_kernel)
    (z, splits, x, dy, y_relu, save_mean, partial);
    NV_CUDA_CHECK_LAUNCH("batch_norm gradient sums over ({}, {}, {})", z.N, z.C, z.S);
  }
  NV_LAUNCH((z.C + 127) / 128, 128, 0, stream(), grad_finish_kernel)
  (z, splits, partial, weight, save_mean, save_invstd, training, dweight, dbias, coef);
  NV_CUDA_CHECK_LAUNCH("batch_norm gradients of {} channels", z.C);
  if (dx == nullptr || z.M == 0) return;
  const int64_t n = int64_t(z.N) * z.C * z.S;
  NV_LAUNCH(grid_size(n, kBlock), kBlock, 0, stream(), dx_kernel)(z, x, dy, y_relu, coef, dx);
  NV_CUDA_CHECK_LAUNCH("batch_norm input gradient over ({}, {}, {})", z.N, z.C, z.S);
}

}  // namespace nextvit::kernels::cuda
