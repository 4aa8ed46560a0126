#pragma once
// A model as a file holds it: the weights plus, when the file describes itself
// (models/model_metadata.h), its configuration, evaluation transform, class names and form.
//
// load_saved_model builds the network the file describes -- or, for a bare file (official or
// timm checkpoints, older runs), the one named on the command line, with the class count read
// from the file's classifier -- loads the weights strictly, and returns it in eval mode. A deploy
// form file is loaded into a folded network, so it computes what the unfolded one did.
#include <memory>
#include <optional>
#include <string>

#include "models/model_metadata.h"
#include "models/nextvit.h"
#include "models/weights.h"

namespace nextvit {

struct SavedModel {
  std::unique_ptr<NextViT> model;  // eval mode, on the CPU
  ModelMetadata metadata;          // as read; metadata.config is set to the model's config
  WeightLayout layout = WeightLayout::Official;
};

// `model_name` ("" when not given): a named model or a JSON configuration, required for a bare
// file, and for a self-describing file an error if it names another architecture.
// `num_classes` (0 when not given): overrides the class count a bare file's classifier implies;
// for a self-describing file it must agree with it. `bare_config`: what a bare file holds when
// no `model_name` is given (eval's default, a checkpoint's configuration).
SavedModel load_saved_model(const std::string& path, const std::string& model_name = "",
                            int64_t num_classes = 0,
                            const std::optional<NextViTConfig>& bare_config = std::nullopt);

// Writes the model with `metadata` (its config is taken from the model). A deploy form
// (metadata.form == Deploy) must be folded and is written without its BatchNorm tensors.
void save_model(const NextViT& model, ModelMetadata metadata, const std::string& path);

// True when the two configurations make tensors of the same names and shapes, apart from the
// classifier (name, drop-path rate and class count are ignored).
bool same_architecture(const NextViTConfig& a, const NextViTConfig& b);

// The class count a bare file's classifier has (proj_head.0.weight or head.fc.weight); 0 when
// it has neither.
int64_t classifier_classes(const NamedTensors& tensors);

}  // namespace nextvit
