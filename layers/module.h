#pragma once
// Module: the unit networks are built from. A module owns, by name and in registration order,
// its parameters (Variables that require gradients), its buffers (Tensors that are state but not
// trained, such as BatchNorm's running statistics) and its child modules. Names compose with
// dots, so a parameter's full name is its path from the root ("features.3.mhca.norm.weight"),
// and the order of state_dict() is PyTorch's: own parameters, own buffers, then each child.
// Choosing the official Next-ViT attribute names for children therefore makes our state dict
// the official one with no renaming table.
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "core/rng.h"

namespace nextvit {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // All parameters / buffers of this module and its descendants, with full names.
  std::vector<std::pair<std::string, Variable>> named_parameters() const;
  std::vector<std::pair<std::string, Tensor*>> named_buffers() const;
  std::vector<Variable> parameters() const;
  // Parameters and buffers, PyTorch's order (the tensors themselves, not copies).
  std::vector<std::pair<std::string, Tensor>> state_dict() const;
  int64_t parameter_count() const;

  // Training mode (batch statistics, drop-path) vs evaluation mode (running statistics).
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves every parameter and buffer to `device` (gradients are dropped). Integer buffers
  // (BatchNorm's num_batches_tracked) are counters the host updates: they stay on the CPU.
  void to(Device device);
  // Draws initial values for every parameter (Next-ViT's init: conv and linear weights
  // truncated normal with std 0.02, biases 0, BatchNorm weight 1 and bias 0). The default
  // recurses into the children; leaf layers override it.
  virtual void reset_parameters(Generator& generator);
  void zero_grad();

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }
  // The descendant at a dotted path of child names ("stages.0.1.mhca"), as named in
  // named_parameters(); an error naming the missing part and the children that do exist.
  Module& child(const std::string& path) const;
  // The same, as a concrete layer type; an error when the child is another type.
  template <typename M>
  M& child(const std::string& path) const {
    M* typed = dynamic_cast<M*>(&child(path));
    NV_CHECK(typed != nullptr, "Module::child: '{}' is not a {}", path, typeid(M).name());
    return *typed;
  }

  // Names the descendants of this module by their paths from it ("features.3.mhca") in the
  // profiler's table (core/profiler.h), so that the ModuleScope a forward opens with
  // profile_id() files time under that path. Until then profile_id() is -1 and opens nothing.
  void name_for_profiling(const std::string& prefix = "");
  int profile_id() const { return profile_id_; }

 protected:
  Variable register_parameter(const std::string& name, const Tensor& value);
  // The module keeps `*slot` as a member; the registry points at it so loading and to() can
  // replace the tensor in place.
  void register_buffer(const std::string& name, Tensor* slot);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    return module;
  }

 private:
  void collect_parameters(const std::string& prefix,
                          std::vector<std::pair<std::string, Variable>>& out) const;
  void collect_buffers(const std::string& prefix,
                       std::vector<std::pair<std::string, Tensor*>>& out) const;
  void collect_state(const std::string& prefix,
                     std::vector<std::pair<std::string, Tensor>>& out) const;

  bool training_ = true;
  int profile_id_ = -1;
  std::vector<std::pair<std::string, Variable>> parameters_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Next-ViT's init of a conv or linear layer: weight truncated normal with std 0.02 (drawn on the
// CPU, then moved to the weight's device), bias (when defined) zero.
void init_weight_and_bias(Variable& weight, Variable& bias, Generator& generator);

}  // namespace nextvit
