#pragma once
// Fused multi-tensor optimizer kernels: one pass over each parameter tensor reads the gradient
// and the state buffers and writes the updated parameter and state, so an update costs one read
// and one write of each buffer instead of the half-dozen passes of separate elementwise ops, and
// one call (one launch on the GPU) covers every parameter. All buffers are contiguous f32.
// Called through autograd/tensor_ops.h. Scalars that depend on the step (bias corrections, the
// decay factor) are computed in double on the host, as torch.optim does in Python, and arrive here
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

// Multi-tensor kernels: each call updates a list of `count` tensors, tensor k having sizes[k]
// elements and its buffers at param[k], grad[k], ... (host arrays of pointers into the device's
// memory, one entry per tensor). On the GPU a call is one launch over all the tensors (PyTorch's
// multi_tensor_apply: the tensors are cut into chunks, one block per chunk, and a table of
// pointers, sizes and per-tensor scalars is uploaded in stream order, without a host wait); on
// the CPU a loop over the tensors, each split over OpenMP threads. Element i of tensor k gets
// the same arithmetic on both, so a list gives the same bits as its tensors one call each.
#define NV_OPTIM_KERNELS                                                                           \
  /* SGD on every tensor k with hyper[k]; momentum_buffer[k] may be null when momentum == 0 */     \
  void sgd_step(int64_t count, const int64_t* sizes, const SgdHyper* hyper, float* const* param,   \
                const float* const* grad, float* const* momentum_buffer);                          \
  /* AdamW on every tensor k with hyper[k] */                                                      \
  void adamw_step(int64_t count, const int64_t* sizes, const AdamWHyper* hyper,                    \
                  float* const* param, const float* const* grad, float* const* exp_avg,            \
                  float* const* exp_avg_sq);                                                       \
  /* ema[k] = decay * ema[k] + one_minus_decay * value[k]: the model-EMA update */                 \
  void ema_update(int64_t count, const int64_t* sizes, float decay, float one_minus_decay,         \
                  const float* const* value, float* const* ema);                                   \
  /* norm[0] = sqrt(sum over the tensors of sum x^2), the squares summed in double in a fixed   */ \
  /* order (the same bits on every run). With max_norm > 0 it also clips without a read-back:   */ \
  /* coef[0] = max_norm / (norm + 1e-6) (torch's float arithmetic), and every x is scaled by    */ \
  /* coef in place when coef < 1 or NaN. coef may be null when max_norm is 0. One device: three */ \
  /* launches (partial sums, total and coefficient, scaling) whatever the count. */                \
  void global_norm(int64_t count, const int64_t* sizes, float* const* x, float max_norm,           \
                   float* norm, float* coef);

namespace cpu {
NV_OPTIM_KERNELS
}  // namespace cpu
namespace cuda {
NV_OPTIM_KERNELS
}  // namespace cuda

#undef NV_OPTIM_KERNELS

}  // namespace nextvit::kernels
