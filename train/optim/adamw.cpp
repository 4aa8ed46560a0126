#include "train/optim/adamw.h"

#include <cmath>

#include "kernels/dispatch.h"
#include "kernels/optim.h"

namespace nextvit {

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options)
    : Optimizer("adamw", std::move(groups), options.lr), options_(options) {
  NV_CHECK(
      options.beta1 >= 0.0 && options.beta1 < 1.0 && options.beta2 >= 0.0 && options.beta2 < 1.0,
      "adamw: betas must lie in [0, 1), got ({}, {})", options.beta1, options.beta2);
  NV_CHECK(options.eps >= 0.0 && std::isfinite(options.eps),
           "adamw: eps must be finite and >= 0, got {}", options.eps);
}

std::vector<Optimizer::StateSpec> AdamW::state_spec() const {
  return {{"exp_avg", true}, {"exp_avg_sq", true}, {"step", false}};
}

void AdamW::update(const Variable& param, const Tensor& grad, const ParamGroup& group, double lr,
                   std::vector<Tensor>& state) {
  if (state.empty()) state = new_state(param);
  int64_t& t = state[2].data<int64_t>()[0];
  ++t;
  // The step-dependent scalars in double, as torch computes them in Python, then rounded once.
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, double(t));
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, double(t));
  kernels::AdamWHyper h;
  h.decay_factor = static_cast<float>(1.0 - lr * group.weight_decay);
  h.one_minus_beta1 = static_cast<float>(1.0 - options_.beta1);
  h.beta2 = static_cast<float>(options_.beta2);
  h.one_minus_beta2 = static_cast<float>(1.0 - options_.beta2);
  h.eps = static_cast<float>(options_.eps);
  h.step_size = static_cast<float>(lr / bias_correction1);
  h.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  NV_DISPATCH(param.device(), adamw_step, param.numel(), h, param.data().data<float>(),
              grad.data<float>(), state[0].data<float>(), state[1].data<float>());
}

}  // namespace nextvit
