#pragma once
// `nextvit train --init W.safetensors`: training starts from saved weights instead of a random
// initialisation -- our own model.safetensors, or an official or timm checkpoint.
//
// The architecture is the file's own when it describes itself (models/model_metadata.h; --model
// may then only repeat it), else --model's. The class count is the new data's: when it differs
// from the file's classifier, the classifier (proj_head.0) keeps its fresh initialisation and a
// message says so, as timm does (the official code fails there); every other tensor must load.
#include <string>

#include "models/model_metadata.h"
#include "models/nextvit.h"
#include "models/weights.h"

namespace nextvit {

struct InitWeights {
  std::string path;
  ModelMetadata metadata;
  NamedTensors tensors;
};

// Reads the file; a deploy-form file (BatchNorms folded away) cannot be trained and is refused.
InitWeights read_init_weights(const std::string& path);

// The configuration to train: `from_options` (--model with the data's class count and the
// drop-path rate) with the file's architecture when it has one. `model_given`: --model was set
// explicitly, so it must name the file's architecture.
NextViTConfig init_config(const InitWeights& init, const NextViTConfig& from_options,
                          bool model_given, bool drop_path_given);

// Copies the weights into `model` and returns a line for the log (what was loaded, and whether
// the classifier was re-initialised).
std::string apply_init_weights(NextViT& model, const InitWeights& init);

}  // namespace nextvit
