// CPU optimizer kernels: for each tensor of the list, one loop that reads each buffer once and
// writes the parameter and state in place, split over OpenMP threads in contiguous chunks. Each
// element's arithmetic follows the order of torch's CPU kernels (mul_, add_, lerp_, addcmul_,
// addcdiv_), so results agree with torch.optim to a rounding or two.
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/optim.h"

namespace nextvit::kernels::cpu {
namespace {

void sgd_one(int64_t n, const SgdHyper& h, float* param, const float* grad,
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

void adamw_one(int64_t n, const AdamWHyper& h, float* param, const float* grad, float* exp_avg,
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

}  // namespace

// One tensor after the other: each is large enough (or small enough to be cheap) that the
// threads split it, so a loop over the list loses little to a fused pass.
void sgd_step(int64_t count, const int64_t* sizes, const SgdHyper* hyper, float* const* param,
              const float* const* grad, float* const* momentum_buffer) {
  for (int64_t k = 0; k < count; ++k) {
    sgd_one(sizes[k], hyper[k], param[k], grad[k], momentum_buffer[k]);
  }
}

void adamw_step(int64_t count, const int64_t* sizes, const AdamWHyper* hyper, float* const* param,
                const float* const* grad, float* const* exp_avg, float* const* exp_avg_sq) {
  for (int64_t k = 0; k < count; ++k) {
    adamw_one(sizes[k], hyper[k], param[k], grad[k], exp_avg[k], exp_avg_sq[k]);
  }
}

void ema_update(int64_t count, const int64_t* sizes, float decay, float one_minus_decay,
                const float* const* value, float* const* ema) {
  for (int64_t k = 0; k < count; ++k) {
    const float* v = value[k];
    float* e = ema[k];
    parallel_for(sizes[k], kElementwiseGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) e[i] = decay * e[i] + one_minus_decay * v[i];
    });
  }
}

void global_norm(int64_t count, const int64_t* sizes, float* const* x, float max_norm, float* norm,
                 float* coef) {
  // Squares in double, so that a tensor of millions of elements loses nothing. parallel_sum
  // adds the per-thread partials in thread order and the tensors are added in list order: the
  // same bits on every run with the same thread count.
  double total = 0.0;
  for (int64_t k = 0; k < count; ++k) {
    const float* xk = x[k];
    total += parallel_sum(sizes[k], kElementwiseGrain, [&](int64_t lo, int64_t hi) {
      double acc = 0.0;
      for (int64_t i = lo; i < hi; ++i) acc += double(xk[i]) * double(xk[i]);
      return acc;
    });
  }
  norm[0] = static_cast<float>(std::sqrt(total));
  if (max_norm <= 0.0f) return;
  const float c = max_norm / (norm[0] + 1e-6f);
  coef[0] = c;
  if (!(c < 1.0f || std::isnan(c))) return;
  for (int64_t k = 0; k < count; ++k) {
    float* xk = x[k];
    parallel_for(sizes[k], kElementwiseGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) xk[i] *= c;
    });
  }
}

}  // namespace nextvit::kernels::cpu
