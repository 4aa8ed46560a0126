#pragma once
// The Next-ViT model:
//   stem: 4 x ConvBNReLU (3 -> s0 stride 2, s0 -> s1, s1 -> s2, s2 -> s2 stride 2)
//   features: the NCB / NTB blocks of all stages in one list (features.{i})
//   norm: BatchNorm over the last stage's channels
//   global average pool, proj_head.0: Linear(channels -> classes)
// Child names are the official implementation's, so state_dict() is the official layout.
#include <memory>

#include "layers/batch_norm.h"
#include "layers/block.h"
#include "layers/containers.h"
#include "layers/conv_bn_relu.h"
#include "layers/linear.h"
#include "models/nextvit_config.h"

namespace nextvit {

class NextViT : public Module {
 public:
  // Builds the model (after config.validate()) and initialises its weights from `seed`.
  explicit NextViT(const NextViTConfig& config, uint64_t seed = 0);
  // x (N, in_channels, H, W) -> logits (N, num_classes)
  Variable forward(const Variable& x);
  // The features before the head: (N, channels) after norm and pooling.
  Variable forward_features(const Variable& x);

  const NextViTConfig& config() const { return config_; }
  // The profiler id of "head" (norm, pooling, proj_head) once named for profiling, else -1.
  int head_profile_id() const;
  // Draws drop-path masks; its state belongs in a checkpoint for exact resume.
  Generator& drop_path_generator() { return *drop_path_generator_; }

  std::shared_ptr<ModuleList<ConvBNReLU>> stem;
  std::shared_ptr<ModuleList<Block>> features;
  std::shared_ptr<BatchNorm> norm;
  std::shared_ptr<ModuleList<Linear>> proj_head;

 private:
  NextViTConfig config_;
  std::unique_ptr<Generator> drop_path_generator_;
};

}  // namespace nextvit
