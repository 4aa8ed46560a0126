#pragma once
// Fused optimizer kernels: one pass over a parameter tensor reads the gradient and the state
// buffers and writes the updated parameter and state, so an update costs one read and one write
// of each buffer instead of the half-dozen passes of separate elementwise ops. All buffers are
// contiguous f32 of n elements. Scalars that depend on the step (bias corrections, the decay
// factor) are computed in double on the host, as torch.optim does in Python, and arrive here
// already rounded to float.
#include <cstdint>

namespace nextvit::kernels {

// The "1 - x" factors are separate fields, computed in double on the host and rounded once, as
// torch computes them in Python: 1.0f - 0.999f in float differs from float(1 - 0.999) by 5e-5
// relative, which would show in exp_avg_sq.

// SGD with momentum, PyTorch's algorithm for one parameter:
//   d = g + weight_decay * p                                          (when weight_decay != 0)
//   buf = init_buffer ? d : momentum * buf + one_minus_dampening * d  (when momentum != 0)
//   d = nesterov ? d + momentum * buf : buf                           (when momentum != 0)
//   p -= lr * d
struct SgdHyper {
  float lr = 0.0f;
  float momentum = 0.0f;
  float one_minus_dampening = 1.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool init_buffer = false;  // the first step that has a gradient: buf = d
};

// AdamW (torch.optim.AdamW, amsgrad off) for one parameter at step t (t >= 1):
//   p *= decay_factor                      decay_factor = 1 - lr * weight_decay
//   m = lerp(m, g, one_minus_beta1)        (torch's lerp: m + w * (g - m) for w < 0.5)
//   v = v * beta2 + one_minus_beta2 * g * g
//   p -= step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)
// with step_size = lr / (1 - beta1^t) and bias_correction2_sqrt = sqrt(1 - beta2^t).
struct AdamWHyper {
  float decay_factor = 1.0f;
  float one_minus_beta1 = 0.1f;
  float beta2 = 0.999f;
  float one_minus_beta2 = 0.001f;
  float eps = 1e-8f;
  float step_size = 0.0f;
  float bias_correction2_sqrt = 1.0f;
};

#define NV_OPTIM_KERNELS                                                                           \
  /* param, grad, momentum_buffer: (n); momentum_buffer may be null when momentum == 0 */          \
  void sgd_step(int64_t n, const SgdHyper& h, float* param, const float* grad,                     \
                float* momentum_buffer);                                                           \
  /* param, grad, exp_avg, exp_avg_sq: (n) */                                                      \
  void adamw_step(int64_t n, const AdamWHyper& h, float* param, const float* grad, float* exp_avg, \
                  float* exp_avg_sq);                                                              \
  /* ema = decay * ema + one_minus_decay * value, both (n): the model-EMA update */                \
  void ema_update(int64_t n, float decay, float one_minus_decay, const float* value, float* ema);  \
  /* out[0] += sum of x[i]^2 over (n): accumulates, so the caller zeroes out once and reads */     \
  /* it once for all the tensors of a global norm (one device-to-host copy on the GPU) */          \
  void sum_squares(int64_t n, const float* x, float* out);                                         \
  /* gradient clipping without a read-back: norm[0] = sqrt(total_sq[0]) and                   */   \
  /* coef[0] = max_norm / (norm + 1e-6) (torch's float arithmetic), then each gradient is     */   \
  /* scaled by coef when coef < 1 or NaN (clip_scale) */                                           \
  void clip_coefficient(const float* total_sq, float max_norm, float* norm, float* coef);          \
  void clip_scale(int64_t n, const float* coef, float* grad);

namespace cpu {
NV_OPTIM_KERNELS
}  // namespace cpu
namespace cuda {
NV_OPTIM_KERNELS
}  // namespace cuda

#undef NV_OPTIM_KERNELS

}  // namespace nextvit::kernels
