#include "train/init_weights.h"

#include "core/safetensors.h"
#include "models/saved_model.h"

namespace nextvit {
namespace {

bool is_classifier(const std::string& name) {
  return name == "proj_head.0.weight" || name == "proj_head.0.bias" || name == "head.fc.weight" ||
         name == "head.fc.bias";
}

}  // namespace

InitWeights read_init_weights(const std::string& path) {
  SafeTensors file = read_safetensors(path);
  InitWeights init;
  init.path = path;
  init.metadata = parse_metadata(file.metadata, path);
  NV_CHECK(init.metadata.form != ModelForm::Deploy,
           "--init {}: a deploy-form file (BatchNorms folded away) cannot be trained; start from "
           "the model.safetensors it was exported from",
           path);
  init.tensors = file.tensors();
  return init;
}

NextViTConfig init_config(const InitWeights& init, const NextViTConfig& from_options,
                          bool model_given, bool drop_path_given) {
  if (!init.metadata.config) return from_options;
  const NextViTConfig& stored = *init.metadata.config;
  NV_CHECK(!model_given || same_architecture(stored, from_options),
           "--init {} holds a {} (its metadata says so), not the --model {}; drop --model",
           init.path, stored.name, from_options.name);
  NextViTConfig c = stored;
  c.num_classes = from_options.num_classes;
  if (drop_path_given) c.drop_path = from_options.drop_path;
  c.validate();
  return c;
}

std::string apply_init_weights(NextViT& model, const InitWeights& init) {
  const int64_t file_classes = classifier_classes(init.tensors);
  const int64_t classes = model.config().num_classes;
  NamedTensors tensors = init.tensors;
  std::string head_note;
  if (file_classes != classes) {
    // The file's classifier cannot serve the new classes: the model's own (freshly initialised)
    // takes its place, under the official names, which both layouts accept.
    NamedTensors kept;
    for (auto& [name, t] : tensors) {
      if (!is_classifier(name)) kept.emplace_back(name, t);
    }
    for (auto& [name, t] : model.state_dict()) {
      if (name.rfind("proj_head.0.", 0) == 0) kept.emplace_back(name, t);
    }
    tensors = std::move(kept);
    head_note = fmt::format(
        "; its classifier has {} classes, the data {}: the classifier (proj_head.0) is "
        "initialised afresh",
        file_classes, classes);
  }
  WeightLayout layout;
  try {
    layout = load_state_dict(model, tensors);
  } catch (const Error& e) {
    NV_FAIL("--init {}: {}", init.path, e.what());
  }
  return fmt::format("--init {}: {} weights loaded ({} layout){}", init.path,
                     init.metadata.config ? init.metadata.config->name : model.config().name,
                     layout == WeightLayout::Timm ? "timm" : "official", head_note);
}

}  // namespace nextvit
