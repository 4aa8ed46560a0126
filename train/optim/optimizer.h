#pragma once
// Optimizer: updates named parameters from their gradients, group by group.
//
// A parameter group is a list of (name, parameter) with its own weight decay and learning-rate
// scale (the group's lr is the optimizer's base lr times lr_scale, as timm's "lr_scale"). The
// trainer sets the base lr from the schedule before every step.
//
// State lives per parameter name, created on the parameter's first update, as torch.optim's
// per-parameter state: the subclass declares its buffers (momentum_buffer; exp_avg, exp_avg_sq,
// step) and this class handles their life cycle, device placement and checkpointing. A
// checkpoint saves state_dict() -- tensors named "<kind>.<param name>.<buffer>" -- and
// step_count(); load_state_dict() restores both, after which step() continues exactly as the
// uninterrupted run would.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "autograd/variable.h"

namespace nextvit {

class Module;

struct ParamGroup {
  std::string name;  // for messages and logs: "decay", "no_decay"
  std::vector<std::pair<std::string, Variable>> params;
  double weight_decay = 0.0;
  double lr_scale = 1.0;
};

// The two groups of timm's param_groups_weight_decay, which the Next-ViT recipe uses:
// "no_decay" (weight decay 0) holds every parameter with dim <= 1 -- BatchNorm/LayerNorm weights
// and biases -- and every name ending in ".bias" or listed in `skip`; "decay" holds the rest
// (conv and linear weights) with `weight_decay`. Parameters that do not require a gradient are
// left out. Order: no_decay, then decay, each in named_parameters() order.
std::vector<ParamGroup> weight_decay_groups(
    const std::vector<std::pair<std::string, Variable>>& named_parameters, double weight_decay,
    const std::vector<std::string>& skip = {});
std::vector<ParamGroup> weight_decay_groups(const Module& module, double weight_decay,
                                            const std::vector<std::string>& skip = {});

class Optimizer {
 public:
  using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

  // `kind` prefixes the state names ("sgd", "adamw"). Parameter names must be unique across the
  // groups and every parameter must be a defined f32 tensor.
  Optimizer(std::string kind, std::vector<ParamGroup> groups, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  const std::string& kind() const { return kind_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  double lr() const { return lr_; }
  void set_lr(double lr);
  // Number of step() calls so far (restored by load_state_dict).
  int64_t step_count() const { return step_count_; }

  // One update of every parameter that has a gradient; the others are skipped and their state
  // is left untouched, as torch.optim does.
  void step();
  // Drops every parameter's gradient (torch's zero_grad(set_to_none=True)).
  void zero_grad();

  // The state tensors themselves (not copies), parameters in group order, buffers in the order
  // the optimizer declares them. Parameters not yet updated have no entries.
  NamedTensors state_dict() const;
  // Replaces all state with copies of `state` placed on each parameter's device, and sets
  // step_count. Every name must belong to this optimizer and a parameter of its groups, shapes
  // must match, and a parameter's buffers must be all present or all absent.
  void load_state_dict(const NamedTensors& state, int64_t step_count);

 protected:
  // One buffer of per-parameter state: an f32 tensor shaped like the parameter and on its
  // device (per_element), or an i64 scalar counter kept on the CPU.
  struct StateSpec {
    const char* name;
    bool per_element;
  };
  virtual std::vector<StateSpec> state_spec() const = 0;
  // One parameter's part of a step. `grad` is contiguous f32 with the parameter's shape and
  // device; `lr` is the group's learning rate. `state` holds the parameter's buffers in
  // state_spec() order, or is empty on the parameter's first update, when the subclass either
  // creates all of them (see new_state) or, if it keeps none (SGD without momentum), leaves it
  // empty.
  struct ParamUpdate {
    const Variable* param;
    Tensor grad;
    const ParamGroup* group;
    double lr;
    std::vector<Tensor>* state;
  };
  // Applies one step to all of `updates` (parameters of one device, in group order) with one
  // call of a tensor-list function of autograd/tensor_ops.h: one kernel launch on a GPU.
  virtual void update(const std::vector<ParamUpdate>& updates) = 0;
  // Zero-filled buffers for `param` following state_spec().
  std::vector<Tensor> new_state(const Variable& param) const;

 private:
  std::string kind_;
  std::vector<ParamGroup> groups_;
  double lr_;
  int64_t step_count_ = 0;
  std::unordered_map<std::string, std::vector<Tensor>> state_;  // by parameter name
};

}  // namespace nextvit
