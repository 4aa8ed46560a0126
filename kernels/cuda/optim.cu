// Optimizer kernels on the GPU: one grid-stride pass per parameter tensor that reads the
// gradient and the state once and writes the parameter and the state once, in place. The
// per-element arithmetic is the CPU kernels' (kernels/cpu/optim.cpp), written in the same order
// with the same roundings, so the two devices agree to the last bit or two (fmaf contraction is
// the only difference, and -fmad is nvcc's default). All memory-bound.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/optim.h"

namespace nextvit::kernels::cuda {
namespace {

// Grid-stride loop; each block moves 256 elements per iteration (coalesced).
#define NV_GRID_STRIDE(i, n)                                                \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

__global__ void sgd_kernel(int64_t n, SgdHyper h, float* __restrict__ param,
                           const float* __restrict__ grad, float* __restrict__ buf) {
  const bool decay = h.weight_decay != 0.0f, use_momentum = h.momentum != 0.0f;
  NV_GRID_STRIDE(i, n) {
    float d = decay ? grad[i] + h.weight_decay * param[i] : grad[i];
    if (use_momentum) {
      const float b = h.init_buffer ? d : buf[i] * h.momentum + h.one_minus_dampening * d;
      buf[i] = b;
      d = h.nesterov ? d + h.momentum * b : b;
    }
    param[i] = param[i] + (-h.lr) * d;
  }
}

__global__ void adamw_kernel(int64_t n, AdamWHyper h, float* __restrict__ param,
                             const float* __restrict__ grad, float* __restrict__ exp_avg,
                             float* __restrict__ exp_avg_sq) {
  // torch's lerp switches formula at weight 0.5 (see the CPU kernel).
  const float w = h.one_minus_beta1;
  const bool small_weight = fabsf(w) < 0.5f;
  NV_GRID_STRIDE(i, n) {
    const float g = grad[i];
    const float p = param[i] * h.decay_factor;
    const float m_old = exp_avg[i];
    const float m = small_weight ? m_old + w * (g - m_old) : g - (g - m_old) * (1.0f - w);
    const float v = exp_avg_sq[i] * h.beta2 + h.one_minus_beta2 * g * g;
    // sqrtf and the divisions are IEEE-exact in CUDA unless -use_fast_math, as on the CPU.
    const float denom = sqrtf(v) / h.bias_correction2_sqrt + h.eps;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = p + (-h.step_size) * m / denom;
  }
}

__global__ void ema_kernel(int64_t n, float decay, float one_minus_decay,
                           const float* __restrict__ value, float* __restrict__ ema) {
  NV_GRID_STRIDE(i, n) {
    ema[i] = decay * ema[i] + one_minus_decay * value[i];
  }
}

#undef NV_GRID_STRIDE

constexpr int kBlock = 256;

}  // namespace

void sgd_step(int64_t n, const SgdHyper& h, float* param, const float* grad,
              float* momentum_buffer) {
  if (n == 0) return;
  NV_LAUNCH(grid_size(n, kBlock), kBlock, 0, stream(), sgd_kernel)
  (n, h, param, grad, momentum_buffer);
  NV_CUDA_CHECK_LAUNCH("sgd_step over {} elements", n);
}

void adamw_step(int64_t n, const AdamWHyper& h, float* param, const float* grad, float* exp_avg,
                float* exp_avg_sq) {
  if (n == 0) return;
  NV_LAUNCH(grid_size(n, kBlock), kBlock, 0, stream(), adamw_kernel)
  (n, h, param, grad, exp_avg, exp_avg_sq);
  NV_CUDA_CHECK_LAUNCH("adamw_step over {} elements", n);
}

void ema_update(int64_t n, float decay, float one_minus_decay, const float* value, float* ema) {
  if (n == 0) return;
  NV_LAUNCH(grid_size(n, kBlock), kBlock, 0, stream(), ema_kernel)
  (n, decay, one_minus_decay, value, ema);
  NV_CUDA_CHECK_LAUNCH("ema_update over {} elements", n);
}

void sum_squares(int64_t n, const float* x, float* out) {
  if (n == 0) return;
  // Squares summed in double (a parameter tensor has up to a few million elements; float
  // partial sums would lose the small ones), in a fixed order: the same bits on every run.
  deterministic_sum(
      n, [=] __device__(int64_t i) { return double(x[i]) * double(x[i]); }, true, out,
      "sum_squares");
}

namespace {
__global__ void clip_scale_kernel(int64_t n, const float* __restrict__ coef,
                                  float* __restrict__ grad) {
  const float c = coef[0];
  // c != c: NaN. The same for every thread: nothing to scale unless clipping.
  if (!(c < 1.0f || c != c)) return;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    grad[i] *= c;
  }
}

__global__ void clip_coefficient_kernel(const float* total_sq, float max_norm, float* norm,
                                        float* coef) {
  const float nrm = static_cast<float>(sqrt(double(total_sq[0])));
  norm[0] = nrm;
  coef[0] = max_norm / (nrm + 1e-6f);
}
}  // namespace

void clip_coefficient(const float* total_sq, float max_norm, float* norm, float* coef) {
  NV_LAUNCH(1, 1, 0, stream(), clip_coefficient_kernel)(total_sq, max_norm, norm, coef);
  NV_CUDA_CHECK_LAUNCH("clip_coefficient");
}

void clip_scale(int64_t n, const float* coef, float* grad) {
  if (n == 0) return;
  NV_LAUNCH(grid_size(n, 256), 256, 0, stream(), clip_scale_kernel)(n, coef, grad);
  NV_CUDA_CHECK_LAUNCH("clip_scale over {} elements", n);
}

}  // namespace nextvit::kernels::cuda
