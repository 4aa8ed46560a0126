#include "models/saved_model.h"

#include <set>

#include "core/safetensors.h"
#include "models/deploy.h"

namespace nextvit {
namespace {

// The architecture alone: what decides the tensors' names and shapes, apart from the classes.
nlohmann::json architecture(const NextViTConfig& c) {
  nlohmann::json j = c.to_json();
  for (const char* k : {"name", "drop_path", "num_classes"}) j.erase(k);
  return j;
}

NextViTConfig resolve_config(const std::string& path, const ModelMetadata& meta,
                             const NamedTensors& tensors, const std::string& model_name,
                             int64_t num_classes, const std::optional<NextViTConfig>& bare) {
  if (meta.config) {
    NextViTConfig c = *meta.config;
    if (!model_name.empty()) {
      NV_CHECK(same_architecture(NextViTConfig::from_name(model_name), c),
               "{} holds a {} (its metadata says so), not the --model {} given; drop --model", path,
               c.name, model_name);
    }
    NV_CHECK(num_classes == 0 || num_classes == c.num_classes,
             "{} holds a model of {} classes, not the {} of --num-classes", path, c.num_classes,
             num_classes);
    return c;
  }
  NV_CHECK(!model_name.empty() || bare,
           "{} does not say which model it holds (no nextvit.config metadata: an official or "
           "timm checkpoint, or an older run); give --model NAME|CONFIG.json",
           path);
  NextViTConfig c = model_name.empty() ? *bare : NextViTConfig::from_name(model_name);
  const int64_t in_file = classifier_classes(tensors);
  c.num_classes = num_classes > 0 ? num_classes : (in_file > 0 ? in_file : c.num_classes);
  c.validate();
  return c;
}

}  // namespace

bool same_architecture(const NextViTConfig& a, const NextViTConfig& b) {
  return architecture(a) == architecture(b);
}

int64_t classifier_classes(const NamedTensors& tensors) {
  for (const auto& [name, t] : tensors) {
    if ((name == "proj_head.0.weight" || name == "head.fc.weight") && t.dim() == 2) {
      return t.shape()[0];
    }
  }
  return 0;
}

SavedModel load_saved_model(const std::string& path, const std::string& model_name,
                            int64_t num_classes, const std::optional<NextViTConfig>& bare_config) {
  SafeTensors file = read_safetensors(path);
  SavedModel out;
  out.metadata = parse_metadata(file.metadata, path);
  NamedTensors tensors = file.tensors();
  const NextViTConfig config =
      resolve_config(path, out.metadata, tensors, model_name, num_classes, bare_config);
  out.metadata.config = config;
  out.model = std::make_unique<NextViT>(config);
  out.model->eval();
  if (out.metadata.form == ModelForm::Deploy) {
    // Give the network the deploy structure (biases on the convs, BatchNorms as identities);
    // the folded values come from the file, the BatchNorms' own stay unused.
    fold_batch_norms(*out.model);
    const std::set<std::string> present = [&] {
      std::set<std::string> s;
      for (const auto& [name, t] : tensors) s.insert(name);
      return s;
    }();
    const auto state = out.model->state_dict();
    const std::vector<std::string> fill = folded_batch_norm_tensors(*out.model);
    const std::set<std::string> fill_set(fill.begin(), fill.end());
    for (const auto& [name, t] : state) {
      if (fill_set.count(name) && !present.count(name)) tensors.emplace_back(name, t);
    }
  }
  try {
    out.layout = load_state_dict(*out.model, tensors);
  } catch (const Error& e) {
    NV_FAIL("{}: {}", path, e.what());
  }
  return out;
}

void save_model(const NextViT& model, ModelMetadata metadata, const std::string& path) {
  metadata.config = model.config();
  NV_CHECK(metadata.classes.empty() ||
               static_cast<int64_t>(metadata.classes.size()) == model.config().num_classes,
           "save_model: {} class names for a model of {} classes", metadata.classes.size(),
           model.config().num_classes);
  const auto tensors =
      metadata.form == ModelForm::Deploy ? deploy_state_dict(model) : model.state_dict();
  write_safetensors(path, tensors, metadata_entries(metadata));
}

}  // namespace nextvit
