#include "train/optim/adamw.h"

#include <cmath>

#include "autograd/tensor_ops.h"

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

void AdamW::update(const std::vector<ParamUpdate>& updates) {
  ops::TensorList params, grads, exp_avgs, exp_avg_sqs;
  std::vector<kernels::AdamWHyper> hyper;
  for (const ParamUpdate& u : updates) {
    std::vector<Tensor>& state = *u.state;
    if (state.empty()) state = new_state(*u.param);
    int64_t& t = state[2].data<int64_t>()[0];
    ++t;
    // The step-dependent scalars in double, as torch computes them in Python, then rounded once.
    const double bias_correction1 = 1.0 - std::pow(options_.beta1, double(t));
    const double bias_correction2 = 1.0 - std::pow(options_.beta2, double(t));
    kernels::AdamWHyper h;
    h.decay_factor = static_cast<float>(1.0 - u.lr * u.group->weight_decay);
    h.one_minus_beta1 = static_cast<float>(1.0 - options_.beta1);
    h.beta2 = static_cast<float>(options_.beta2);
    h.one_minus_beta2 = static_cast<float>(1.0 - options_.beta2);
    h.eps = static_cast<float>(options_.eps);
    h.step_size = static_cast<float>(u.lr / bias_correction1);
    h.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    hyper.push_back(h);
    params.push_back(u.param->data());
    grads.push_back(u.grad);
    exp_avgs.push_back(state[0]);
    exp_avg_sqs.push_back(state[1]);
  }
  ops::adamw_step_(params, grads, exp_avgs, exp_avg_sqs, hyper);
}

}  // namespace nextvit
