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

}  // namespace nextvit
