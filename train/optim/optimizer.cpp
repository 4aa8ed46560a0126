#include "train/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <unordered_set>

#include "layers/module.h"

namespace nextvit {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<ParamGroup> weight_decay_groups(
    const std::vector<std::pair<std::string, Variable>>& named_parameters, double weight_decay,
    const std::vector<std::string>& skip) {
  NV_CHECK(weight_decay >= 0.0 && std::isfinite(weight_decay),
           "weight_decay_groups: weight decay must be a finite value >= 0, got {}", weight_decay);
  ParamGroup no_decay{"no_decay", {}, 0.0, 1.0};
  ParamGroup decay{"decay", {}, weight_decay, 1.0};
  for (const auto& [name, p] : named_parameters) {
    if (!p.requires_grad()) continue;
    const bool exempt = p.dim() <= 1 || ends_with(name, ".bias") ||
                        std::find(skip.begin(), skip.end(), name) != skip.end();
    (exempt ? no_decay : decay).params.emplace_back(name, p);
  }
  return {no_decay, decay};
}

std::vector<ParamGroup> weight_decay_groups(const Module& module, double weight_decay,
                                            const std::vector<std::string>& skip) {
  return weight_decay_groups(module.named_parameters(), weight_decay, skip);
}

Optimizer::Optimizer(std::string kind, std::vector<ParamGroup> groups, double lr)
    : kind_(std::move(kind)), groups_(std::move(groups)) {
  set_lr(lr);
  std::unordered_set<std::string> names;
  for (const ParamGroup& g : groups_) {
    NV_CHECK(g.weight_decay >= 0.0 && std::isfinite(g.weight_decay),
             "{}: group '{}' has weight decay {}; it must be finite and >= 0", kind_, g.name,
             g.weight_decay);
    NV_CHECK(g.lr_scale >= 0.0 && std::isfinite(g.lr_scale),
             "{}: group '{}' has lr_scale {}; it must be finite and >= 0", kind_, g.name,
             g.lr_scale);
    for (const auto& [name, p] : g.params) {
      NV_CHECK(p.defined(), "{}: parameter '{}' of group '{}' is undefined", kind_, name, g.name);
      NV_CHECK(p.data().dtype() == DType::F32, "{}: parameter '{}' is {}, optimizers update f32",
               kind_, name, dtype_name(p.data().dtype()));
      NV_CHECK(names.insert(name).second,
               "{}: parameter '{}' appears twice in the parameter groups", kind_, name);
    }
  }
}

void Optimizer::set_lr(double lr) {
  NV_CHECK(lr >= 0.0 && std::isfinite(lr), "{}: learning rate must be finite and >= 0, got {}",
           kind_, lr);
  lr_ = lr;
}

void Optimizer::step() {
  // Every gradient is checked before any parameter moves, so a bad one cannot leave the model
  // half updated.
  for (const ParamGroup& g : groups_) {
    for (const auto& [name, p] : g.params) {
      const Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      NV_CHECK(grad.dtype() == DType::F32 && grad.shape() == p.shape(),
               "{}: parameter '{}' {} has gradient {} with shape {}", kind_, name,
               shape_str(p.shape()), dtype_name(grad.dtype()), shape_str(grad.shape()));
      NV_CHECK(grad.device() == p.device(), "{}: parameter '{}' is on {} but its gradient on {}",
               kind_, name, p.device().str(), grad.device().str());
      NV_CHECK(p.data().is_contiguous(),
               "{}: parameter '{}' {} must be contiguous to be updated in place", kind_, name,
               p.data().str());
    }
  }
  ++step_count_;
  // Every parameter with a gradient, batched by device (one batch in practice): the subclass
  // updates a batch with one tensor-list call. Pointers into state_ stay valid while it grows
  // (an unordered_map's nodes do not move).
  std::vector<std::pair<Device, std::vector<ParamUpdate>>> batches;
  for (const ParamGroup& g : groups_) {
    const double group_lr = lr_ * g.lr_scale;
    for (const auto& [name, p] : g.params) {
      if (!p.grad().defined()) continue;
      std::vector<Tensor>& state = state_[name];
      // A model moved to another device after its state was created (or loaded) takes the
      // state along on its next update.
      for (Tensor& s : state) {
        if (s.dtype() == DType::F32 && s.device() != p.device()) s = s.to(p.device());
      }
      std::vector<ParamUpdate>* batch = nullptr;
      for (auto& [device, b] : batches) {
        if (device == p.device()) batch = &b;
      }
      if (batch == nullptr)
        batch = &batches.emplace_back(p.device(), std::vector<ParamUpdate>{}).second;
      batch->push_back(ParamUpdate{&p, p.grad().contiguous(), &g, group_lr, &state});
    }
  }
  for (const auto& [device, batch] : batches) update(batch);
  // Optimizers that keep no state (SGD without momentum) leave no entries behind.
  for (auto it = state_.begin(); it != state_.end();) {
    it = it->second.empty() ? state_.erase(it) : std::next(it);
  }
}

void Optimizer::zero_grad() {
  for (const ParamGroup& g : groups_) {
    for (const auto& [name, p] : g.params) p.zero_grad();
  }
}

std::vector<Tensor> Optimizer::new_state(const Variable& param) const {
  std::vector<Tensor> out;
  for (const StateSpec& s : state_spec()) {
    out.push_back(s.per_element ? Tensor::zeros(param.shape(), DType::F32, param.device())
                                : Tensor::zeros({}, DType::I64));
  }
  return out;
}

Optimizer::NamedTensors Optimizer::state_dict() const {
  const std::vector<StateSpec> spec = state_spec();
  NamedTensors out;
  for (const ParamGroup& g : groups_) {
    for (const auto& [name, p] : g.params) {
      auto it = state_.find(name);
      if (it == state_.end()) continue;
      for (size_t i = 0; i < spec.size(); ++i) {
        out.emplace_back(kind_ + "." + name + "." + spec[i].name, it->second[i]);
      }
    }
  }
  return out;
}

void Optimizer::load_state_dict(const NamedTensors& state, int64_t step_count) {
  NV_CHECK(step_count >= 0, "{}: load_state_dict: step count {} is negative", kind_, step_count);
  const std::vector<StateSpec> spec = state_spec();
  std::unordered_map<std::string, const Variable*> params;
  for (const ParamGroup& g : groups_) {
    for (const auto& [name, p] : g.params) params[name] = &p;
  }
  // Parse "<kind>.<param name>.<buffer>": the parameter name itself holds dots, so the buffer is
  // recognised by suffix (longest first, so "exp_avg_sq" is never read as "exp_avg").
  std::vector<size_t> by_length(spec.size());
  for (size_t i = 0; i < spec.size(); ++i) by_length[i] = i;
  std::sort(by_length.begin(), by_length.end(), [&](size_t a, size_t b) {
    return std::string(spec[a].name).size() > std::string(spec[b].name).size();
  });
  const std::string prefix = kind_ + ".";
  std::unordered_map<std::string, std::vector<Tensor>> loaded;
  for (const auto& [key, t] : state) {
    NV_CHECK(key.compare(0, prefix.size(), prefix) == 0,
             "{}: load_state_dict: '{}' is not state of this optimizer (expected the prefix '{}')",
             kind_, key, prefix);
    size_t buffer = spec.size();
    for (size_t i : by_length) {
      const std::string suffix = std::string(".") + spec[i].name;
      if (key.size() > prefix.size() + suffix.size() && ends_with(key, suffix)) {
        buffer = i;
        break;
      }
    }
    NV_CHECK(buffer < spec.size(), "{}: load_state_dict: '{}' names no known buffer", kind_, key);
    const std::string param_name = key.substr(
        prefix.size(), key.size() - prefix.size() - std::string(spec[buffer].name).size() - 1);
    auto it = params.find(param_name);
    NV_CHECK(it != params.end(), "{}: load_state_dict: '{}' is state of an unknown parameter '{}'",
             kind_, key, param_name);
    const Variable& p = *it->second;
    NV_CHECK(t.defined(), "{}: load_state_dict: '{}' is undefined", kind_, key);
    if (spec[buffer].per_element) {
      NV_CHECK(t.dtype() == DType::F32 && t.shape() == p.shape(),
               "{}: load_state_dict: '{}' is {} {}, expected f32 {} like the parameter", kind_, key,
               dtype_name(t.dtype()), shape_str(t.shape()), shape_str(p.shape()));
    } else {
      NV_CHECK(t.dtype() == DType::I64 && t.numel() == 1,
               "{}: load_state_dict: '{}' is {} {}, expected an i64 scalar", kind_, key,
               dtype_name(t.dtype()), shape_str(t.shape()));
    }
    std::vector<Tensor>& slots = loaded[param_name];
    slots.resize(spec.size());
    NV_CHECK(!slots[buffer].defined(), "{}: load_state_dict: '{}' appears twice", kind_, key);
    // Copies, so the caller's tensors (often just read from a file) are never aliased.
    if (spec[buffer].per_element) {
      slots[buffer] = t.device() == p.device() ? t.clone() : t.to(p.device());
    } else {
      slots[buffer] = t.cpu().reshape({}).clone();
    }
  }
  for (const auto& [name, slots] : loaded) {
    for (size_t i = 0; i < spec.size(); ++i) {
      NV_CHECK(slots[i].defined(),
               "{}: load_state_dict: parameter '{}' has state but no '{}.{}.{}'", kind_, name,
               kind_, name, spec[i].name);
    }
  }
  state_ = std::move(loaded);
  step_count_ = step_count;
}

}  // namespace nextvit
