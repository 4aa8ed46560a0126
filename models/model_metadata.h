#pragma once
// What a weights file says about itself, in its safetensors __metadata__ (strings only):
//
//   "nextvit.config"      the model configuration, NextViTConfig::to_json()
//   "nextvit.preprocess"  the evaluation transform, Preprocess::to_json()
//   "nextvit.classes"     the class names by label, a JSON array of strings
//   "nextvit.form"        "train" (the network as trained) or "deploy" (every BatchNorm folded
//                         into a neighbouring conv or linear, models/deploy.h)
//
// Training writes all four into model.safetensors, so `eval`, `forward`, `predict` and `export`
// need nothing but the file. Files without them (official and timm checkpoints, older runs) still
// load: the command line then supplies the configuration. This file is the one place that reads
// and writes these keys; each value is validated before it is trusted.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "models/nextvit_config.h"

namespace nextvit {

// The evaluation transform of a trained model, as data (train/data builds the Pipeline):
//   resize "exact":   the whole image resized to size x size (aspect not kept; Fashion-MNIST)
//   resize "center":  shorter side resized to floor(size / crop_pct), then the centred
//                     size x size crop (timm's eval transform, ImageNet and image folders)
// then 1-channel images repeated to 3 (gray_to_rgb) and out = (pixel / 255 - mean[c]) / std[c]
// (one mean/std value applies to every channel).
struct Preprocess {
  int64_t size = 224;
  std::string resize = "center";
  double crop_pct = 0.875;
  std::vector<float> mean{0.485f, 0.456f, 0.406f};
  std::vector<float> std{0.229f, 0.224f, 0.225f};
  bool gray_to_rgb = true;

  nlohmann::json to_json() const;
  // Validates every field; `source` names the file in errors.
  static Preprocess from_json(const nlohmann::json& j, const std::string& source = "<json>");
  bool operator==(const Preprocess& o) const { return to_json() == o.to_json(); }
};

enum class ModelForm { Train, Deploy };

struct ModelMetadata {
  std::optional<NextViTConfig> config;
  std::optional<Preprocess> preprocess;
  std::vector<std::string> classes;  // empty: unknown
  ModelForm form = ModelForm::Train;
};

// The __metadata__ entries for `m` (absent parts are left out).
std::map<std::string, std::string> metadata_entries(const ModelMetadata& m);
// Reads the nextvit.* entries (others are ignored); a malformed value is an error naming
// `source` and the key. Checks that the classes agree with the configuration's class count.
ModelMetadata parse_metadata(const std::map<std::string, std::string>& entries,
                             const std::string& source);

const char* form_name(ModelForm form);

}  // namespace nextvit
