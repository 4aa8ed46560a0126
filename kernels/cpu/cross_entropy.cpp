// CPU cross-entropy (kernels/cross_entropy.h): one row per iteration, rows split across threads.
// The per-row log-sum-exp and loss are computed in double; the mean is an ordered double sum.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/cross_entropy.h"

namespace nextvit::kernels::cpu {

void cross_entropy_forward(int64_t n, int64_t k, const float* logits, const int64_t* targets,
                           float smoothing, float* loss, float* lse) {
  const double s = smoothing;
  // Rows are split statically and the per-thread sums added in thread order (parallel_sum), so
  // the loss has the same bits on every run.
  const int64_t grain = grain_for(k);
  const double total = parallel_sum(n, grain, [&](int64_t lo, int64_t hi) {
    double acc = 0.0;
    for (int64_t r = lo; r < hi; ++r) {
      const float* xr = logits + r * k;
      const float max = *std::max_element(xr, xr + k);
      double sum_exp = 0.0, sum_x = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        sum_exp += std::exp(double(xr[j] - max));
        sum_x += xr[j];
      }
      const double row_lse = double(max) + std::log(sum_exp);
      lse[r] = static_cast<float>(row_lse);
      acc += row_lse - (1.0 - s) * double(xr[targets[r]]) - s / double(k) * sum_x;
    }
    return acc;
  });
  loss[0] = static_cast<float>(total / double(n));
}

// Derivation: docs/derivations.md#label-smoothed-cross-entropy-backward
void cross_entropy_backward(int64_t n, int64_t k, const float* logits, const int64_t* targets,
                            const float* lse, float smoothing, const float* grad_loss,
                            float* dlogits) {
  const float g = grad_loss[0] / static_cast<float>(n);
  const float off_target = smoothing / static_cast<float>(k);  // q_j for j != t
  const float on_target = 1.0f - smoothing + off_target;       // q_t
  parallel_for(n, grain_for(k), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* xr = logits + r * k;
      float* dr = dlogits + r * k;
      for (int64_t j = 0; j < k; ++j) {
        dr[j] = g * (std::exp(xr[j] - lse[r]) - off_target);
      }
      dr[targets[r]] = g * (std::exp(xr[targets[r]] - lse[r]) - on_target);
    }
  });
}

}  // namespace nextvit::kernels::cpu
