#pragma once
// Exponential moving average of a model's weights, timm's ModelEmaV2 rule: after each
// optimizer step, for every entry of the model's state dict (parameters and buffers),
//   ema = decay * ema + (1 - decay) * value      for f32 tensors
//   ema = value                                  for integer buffers (num_batches_tracked)
// The averaged weights usually evaluate better than the raw ones late in training.
//
// The EMA keeps its own copies of the tensors, named as in the model's state_dict(), so they
// can be saved as a model file, loaded into a second instance of the architecture with copy_to()
// for evaluation, and checkpointed with state_dict() / load_state_dict().
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace nextvit {

class Module;

class ModelEma {
 public:
  using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

  // Starts from a copy of the model's current state. f32 tensors live on `device` when given
  // (timm's model_ema_force_cpu keeps them on the CPU), else on the model's device; integer
  // buffers stay on the CPU, as in the model.
  ModelEma(const Module& model, double decay, std::optional<Device> device = std::nullopt);

  double decay() const { return decay_; }
  void set_decay(double decay);

  // One EMA step from the model's current state; its names and shapes must match.
  void update(const Module& model);
  // Writes the averaged values into `target`'s parameters and buffers in place (a second
  // instance of the same architecture, on any device).
  void copy_to(const Module& target) const;

  // The averaged tensors themselves (not copies), in the model's state_dict() order.
  const NamedTensors& state_dict() const { return state_; }
  // Copies values from `state`, which must hold exactly this EMA's names (in any order), dtypes
  // and shapes.
  void load_state_dict(const NamedTensors& state);

 private:
  // Throws unless `other` lists the same names, dtypes and shapes in the same order.
  void check_matches(const NamedTensors& other, const char* what) const;

  double decay_;
  NamedTensors state_;
};

}  // namespace nextvit
