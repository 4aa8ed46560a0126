#include "train/optim/sgd.h"

#include <cmath>

#include "autograd/tensor_ops.h"

namespace nextvit {

Sgd::Sgd(std::vector<ParamGroup> groups, const SgdOptions& options)
    : Optimizer("sgd", std::move(groups), options.lr), options_(options) {
  NV_CHECK(options.momentum >= 0.0 && std::isfinite(options.momentum),
           "sgd: momentum must be finite and >= 0, got {}", options.momentum);
  NV_CHECK(std::isfinite(options.dampening), "sgd: dampening must be finite, got {}",
           options.dampening);
  // As torch: Nesterov momentum is defined only for a plain (undamped) momentum buffer.
  NV_CHECK(!options.nesterov || (options.momentum > 0.0 && options.dampening == 0.0),
           "sgd: nesterov needs momentum > 0 and dampening 0, got momentum {} dampening {}",
           options.momentum, options.dampening);
}

std::vector<Optimizer::StateSpec> Sgd::state_spec() const {
  if (options_.momentum == 0.0) return {};
  return {{"momentum_buffer", true}};
}

void Sgd::update(const std::vector<ParamUpdate>& updates) {
  ops::TensorList params, grads, buffers;
  std::vector<kernels::SgdHyper> hyper;
  for (const ParamUpdate& u : updates) {
    kernels::SgdHyper h;
    h.lr = static_cast<float>(u.lr);
    h.momentum = static_cast<float>(options_.momentum);
    h.one_minus_dampening = static_cast<float>(1.0 - options_.dampening);
    h.weight_decay = static_cast<float>(u.group->weight_decay);
    h.nesterov = options_.nesterov;
    if (options_.momentum != 0.0) {
      // The buffer's first value is the (decayed) gradient itself, which the kernel writes when
      // init_buffer is set, so the zeros of a fresh buffer are never read.
      std::vector<Tensor>& state = *u.state;
      h.init_buffer = state.empty();
      if (state.empty()) state = new_state(*u.param);
      buffers.push_back(state[0]);
    }
    hyper.push_back(h);
    params.push_back(u.param->data());
    grads.push_back(u.grad);
  }
  ops::sgd_step_(params, grads, buffers, hyper);
}

}  // namespace nextvit
