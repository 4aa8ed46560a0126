#pragma once
// Loading and saving Next-ViT weights. Two layouts hold the same tensors under different names:
//   official (bytedance/Next-ViT):  features.{i}.mlp.conv1.weight ...  proj_head.0.weight
//   timm (timm/models/nextvit.py):  stages.{s}.blocks.{b}.mlp.fc1.weight ...  head.fc.weight
// The layout is detected from the names; timm names are mapped to the official ones, which are
// the names our modules register. Loading is strict: a missing, unexpected or wrongly shaped
// tensor is an error that names the key.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "models/nextvit.h"

namespace nextvit {

enum class WeightLayout { Official, Timm };

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

WeightLayout detect_layout(const NamedTensors& tensors);
// A timm name in official form, for a model of this configuration (block numbering).
std::string timm_to_official(const std::string& name, const NextViTConfig& config);
std::string official_to_timm(const std::string& name, const NextViTConfig& config);

// Copies the tensors into the model's parameters and buffers (converted to f32, or kept i64
// for num_batches_tracked, and moved to the model's device). Returns the detected layout.
WeightLayout load_state_dict(NextViT& model, const NamedTensors& tensors);

// safetensors files (official names on save; `metadata` goes to __metadata__,
// models/model_metadata.h).
WeightLayout load_weights(NextViT& model, const std::string& path);
void save_weights(const Module& model, const std::string& path,
                  const std::map<std::string, std::string>& metadata = {});

}  // namespace nextvit
