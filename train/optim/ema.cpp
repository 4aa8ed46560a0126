#include "train/optim/ema.h"

#include <unordered_map>

#include "autograd/tensor_ops.h"
#include "layers/module.h"

namespace nextvit {

ModelEma::ModelEma(const Module& model, double decay, std::optional<Device> device) {
  set_decay(decay);
  for (const auto& [name, t] : model.state_dict()) {
    NV_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::I64,
             "model ema: '{}' is {}; only f32 and i64 state can be averaged", name,
             dtype_name(t.dtype()));
    Tensor copy;
    if (t.dtype() == DType::I64) {
      copy = t.cpu().clone();
    } else {
      const Device target = device.value_or(t.device());
      copy = t.device() == target ? t.clone() : t.to(target);
    }
    state_.emplace_back(name, copy);
  }
}

void ModelEma::set_decay(double decay) {
  NV_CHECK(decay >= 0.0 && decay <= 1.0, "model ema: decay must lie in [0, 1], got {}", decay);
  decay_ = decay;
}

void ModelEma::check_matches(const NamedTensors& other, const char* what) const {
  NV_CHECK(other.size() == state_.size(), "model ema: {} has {} tensors, the EMA holds {}", what,
           other.size(), state_.size());
  for (size_t i = 0; i < state_.size(); ++i) {
    const auto& [name, t] = state_[i];
    const auto& [other_name, o] = other[i];
    NV_CHECK(other_name == name, "model ema: entry {} of the {} is '{}', the EMA has '{}'", i, what,
             other_name, name);
    NV_CHECK(o.defined() && o.dtype() == t.dtype() && o.shape() == t.shape(),
             "model ema: '{}' of the {} is {} {}, the EMA holds {} {}", name, what,
             o.defined() ? dtype_name(o.dtype()) : "undefined", shape_str(o.shape()),
             dtype_name(t.dtype()), shape_str(t.shape()));
  }
}

void ModelEma::update(const Module& model) {
  const NamedTensors current = model.state_dict();
  check_matches(current, "model");
  // The "1 - decay" factor is formed in double and rounded once, as timm does in Python.
  const float decay = static_cast<float>(decay_), one_minus = static_cast<float>(1.0 - decay_);
  // The f32 tensors of each device (one in practice) go to one tensor-list call: one launch.
  std::vector<std::pair<Device, std::pair<ops::TensorList, ops::TensorList>>> lists;
  for (size_t i = 0; i < state_.size(); ++i) {
    const Tensor& ema = state_[i].second;
    const Tensor& value = current[i].second;
    if (ema.dtype() == DType::I64) {
      ema.copy_(value);
      continue;
    }
    // A model on the GPU with an EMA on the CPU: the value crosses over first (as timm's
    // model_v.to(device)).
    const Tensor v = value.device() == ema.device() ? value.contiguous() : value.to(ema.device());
    std::pair<ops::TensorList, ops::TensorList>* l = nullptr;
    for (auto& [device, pair] : lists) {
      if (device == ema.device()) l = &pair;
    }
    if (l == nullptr)
      l = &lists.emplace_back(ema.device(), std::make_pair(ops::TensorList{}, ops::TensorList{}))
               .second;
    l->first.push_back(ema);
    l->second.push_back(v);
  }
  for (const auto& [device, l] : lists) ops::ema_update_(l.first, l.second, decay, one_minus);
}

void ModelEma::copy_to(const Module& target) const {
  // Module::state_dict() hands out the module's own tensors, so copy_ writes into the model.
  const NamedTensors dst = target.state_dict();
  check_matches(dst, "target module");
  for (size_t i = 0; i < state_.size(); ++i) dst[i].second.copy_(state_[i].second);
}

void ModelEma::load_state_dict(const NamedTensors& state) {
  // Matched by name, not position: a checkpoint file may store its tensors in any order.
  std::unordered_map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : state) {
    NV_CHECK(by_name.emplace(name, &t).second, "model ema: load_state_dict: '{}' appears twice",
             name);
  }
  NV_CHECK(by_name.size() == state_.size(),
           "model ema: load_state_dict: got {} tensors, the EMA holds {}", by_name.size(),
           state_.size());
  for (const auto& [name, t] : state_) {
    auto it = by_name.find(name);
    NV_CHECK(it != by_name.end(), "model ema: load_state_dict: '{}' is missing", name);
    const Tensor& o = *it->second;
    NV_CHECK(o.defined() && o.dtype() == t.dtype() && o.shape() == t.shape(),
             "model ema: load_state_dict: '{}' is {} {}, the EMA holds {} {}", name,
             o.defined() ? dtype_name(o.dtype()) : "undefined", shape_str(o.shape()),
             dtype_name(t.dtype()), shape_str(t.shape()));
  }
  for (const auto& [name, t] : state_) t.copy_(*by_name[name]);
}

}  // namespace nextvit
