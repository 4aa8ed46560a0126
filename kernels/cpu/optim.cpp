// CPU optimizer kernels: one loop per parameter tensor that reads each buffer once and writes
// the parameter and state in place, split over OpenMP threads in contiguous chunks. Each
// element's arithmetic follows the order of torch's CPU kernels (mul_, add_, lerp_, addcmul_,
// addcdiv_), so results agree with torch.optim to a rounding or two.
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/optim.h"

namespace nextvit::kernels::cpu {

void sgd_step(int64_t n, const SgdHyper& h, float* param, const float* grad,
              float* momentum_buffer) {
  const bool decay = h.weight_decay != 0.0f, use_momentum = h.momentum != 0.0f;
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      float d = decay ? grad[i] + h.weight_decay * param[i] : grad[i];
      if (use_momentum) {
        const float b =
            h.init_buffer ? d : momentum_buffer[i] * h.momentum + h.one_minus_dampening * d;
        momentum_buffer[i] = b;
        d = h.nesterov ? d + h.momentum * b : b;
      }
      param[i] = param[i] + (-h.lr) * d;
    }
  });
}

void adamw_step(int64_t n, const AdamWHyper& h, float* param, const float* grad, float* exp_avg,
                float* exp_avg_sq) {
  // torch's lerp(m, g, w) switches formula at w = 0.5 to stay exact near both ends.
  const float w = h.one_minus_beta1;
  const bool small_weight = std::fabs(w) < 0.5f;
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float g = grad[i];
      const float p = param[i] * h.decay_factor;
      const float m_old = exp_avg[i];
      const float m = small_weight ? m_old + w * (g - m_old) : g - (g - m_old) * (1.0f - w);
      const float v = exp_avg_sq[i] * h.beta2 + h.one_minus_beta2 * g * g;
      const float denom = std::sqrt(v) / h.bias_correction2_sqrt + h.eps;
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      param[i] = p + (-h.step_size) * m / denom;
    }
  });
}

void ema_update(int64_t n, float decay, float one_minus_decay, const float* value, float* ema) {
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) ema[i] = decay * ema[i] + one_minus_decay * value[i];
  });
}

void sum_squares(int64_t n, const float* x, float* out) {
  // Accumulated in double so that a tensor of millions of elements loses nothing; the running
  // total across tensors is the caller's float.
  // parallel_sum adds the per-thread partials in thread order: the same bits on every run.
  const double total = parallel_sum(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    double acc = 0.0;
    for (int64_t i = lo; i < hi; ++i) acc += double(x[i]) * double(x[i]);
    return acc;
  });
  out[0] = static_cast<float>(double(out[0]) + total);
}

void clip_coefficient(const float* total_sq, float max_norm, float* norm, float* coef) {
  norm[0] = static_cast<float>(std::sqrt(double(total_sq[0])));
  coef[0] = max_norm / (norm[0] + 1e-6f);
}

void clip_scale(int64_t n, const float* coef, float* grad) {
  const float c = coef[0];
  if (!(c < 1.0f || std::isnan(c))) return;
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) grad[i] *= c;
  });
}

}  // namespace nextvit::kernels::cpu
