#include "layers/module.h"

#include "core/profiler.h"

namespace nextvit {

Variable Module::register_parameter(const std::string& name, const Tensor& value) {
  Variable v(value, true);
  parameters_.emplace_back(name, v);
  return v;
}

void Module::register_buffer(const std::string& name, Tensor* slot) {
  buffers_.emplace_back(name, slot);
}

void Module::collect_parameters(const std::string& prefix,
                                std::vector<std::pair<std::string, Variable>>& out) const {
  for (const auto& [name, v] : parameters_) out.emplace_back(prefix + name, v);
  for (const auto& [name, child] : children_) child->collect_parameters(prefix + name + ".", out);
}

void Module::collect_buffers(const std::string& prefix,
                             std::vector<std::pair<std::string, Tensor*>>& out) const {
  for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect_buffers(prefix + name + ".", out);
}

void Module::collect_state(const std::string& prefix,
                           std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, v] : parameters_) out.emplace_back(prefix + name, v.data());
  for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, *t);
  for (const auto& [name, child] : children_) child->collect_state(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Variable>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Variable>> out;
  collect_parameters("", out);
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor*>> out;
  collect_buffers("", out);
  return out;
}

std::vector<Variable> Module::parameters() const {
  std::vector<Variable> out;
  for (auto& [name, v] : named_parameters()) out.push_back(v);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_state("", out);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [name, v] : named_parameters()) n += v.numel();
  return n;
}

Module& Module::child(const std::string& path) const {
  const Module* parent = this;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string name = path.substr(start, dot == std::string::npos ? dot : dot - start);
    Module* found = nullptr;
    std::string known;
    for (const auto& [child_name, child] : parent->children_) {
      if (child_name == name) found = child.get();
      known += (known.empty() ? "" : ", ") + child_name;
    }
    NV_CHECK(found != nullptr, "Module::child: no child '{}' in {} (children: {})", name,
             start == 0 ? std::string("this module") : "'" + path.substr(0, start - 1) + "'",
             known.empty() ? "none" : known);
    if (dot == std::string::npos) return *found;
    parent = found;
    start = dot + 1;
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::to(Device device) {
  for (auto& [name, v] : parameters_) {
    v.set_data(v.data().to(device));
    v.zero_grad();
  }
  for (auto& [name, t] : buffers_) {
    if (t->dtype() != DType::I64) *t = t->to(device);
  }
  for (auto& [name, child] : children_) child->to(device);
}

void Module::reset_parameters(Generator& generator) {
  for (auto& [name, child] : children_) child->reset_parameters(generator);
}

void Module::zero_grad() {
  for (auto& [name, v] : named_parameters()) v.zero_grad();
}

void Module::name_for_profiling(const std::string& prefix) {
  for (auto& [name, child] : children_) {
    const std::string path = prefix.empty() ? name : prefix + "." + name;
    child->profile_id_ = profiler::intern(path);
    child->name_for_profiling(path);
  }
}

void init_weight_and_bias(Variable& weight, Variable& bias, Generator& generator) {
  Tensor w = Tensor::empty(weight.shape());
  fill_trunc_normal(w, generator, 0.02f);
  weight.set_data(w.to(weight.device()));
  if (bias.defined()) bias.data().zero_();
}

}  // namespace nextvit
