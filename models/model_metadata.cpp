#include "models/model_metadata.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/json_input.h"

namespace nextvit {
namespace {

constexpr const char* kConfigKey = "nextvit.config";
constexpr const char* kPreprocessKey = "nextvit.preprocess";
constexpr const char* kClassesKey = "nextvit.classes";
constexpr const char* kFormKey = "nextvit.form";

const std::set<std::string> kPreprocessKeys = {"size", "resize", "crop_pct",
                                               "mean", "std",    "gray_to_rgb"};

// A list of 1 or 3 finite floats (one value per channel, or one for all), each in [lo, hi].
std::vector<float> float_list(const nlohmann::json& v, const std::string& what, double lo,
                              double hi) {
  NV_CHECK(v.is_array() && (v.size() == 1 || v.size() == 3),
           "{} must be a list of 1 or 3 numbers, got {}", what, v.dump());
  std::vector<float> out;
  for (const auto& x : v) out.push_back(static_cast<float>(json_to_number(x, what, lo, hi)));
  return out;
}

}  // namespace

namespace {

// A float as the shortest decimal that reads back as the same float: 0.286f is written 0.286,
// not 0.28600001335144043.
nlohmann::json short_floats(const std::vector<float>& values) {
  nlohmann::json out = nlohmann::json::array();
  for (float v : values) out.push_back(std::stod(fmt::format("{}", v)));
  return out;
}

}  // namespace

nlohmann::json Preprocess::to_json() const {
  return {{"size", size},
          {"resize", resize},
          {"crop_pct", crop_pct},
          {"mean", short_floats(mean)},
          {"std", short_floats(std)},
          {"gray_to_rgb", gray_to_rgb}};
}

Preprocess Preprocess::from_json(const nlohmann::json& j, const std::string& source) {
  const std::string where = "preprocessing of " + source;
  NV_CHECK(j.is_object(), "{}: expected a JSON object, got {}", where, j.type_name());
  for (const auto& item : j.items()) {
    NV_CHECK(kPreprocessKeys.count(item.key()), "{}: unknown key \"{}\"", where, item.key());
  }
  for (const auto& k : kPreprocessKeys) {
    NV_CHECK(j.contains(k), "{}: \"{}\" is missing", where, k);
  }
  auto key = [&](const char* k) { return fmt::format("{}: \"{}\"", where, k); };
  Preprocess p;
  p.size = json_to_int(j["size"], key("size"), 1, kMaxImageSide);
  NV_CHECK(j["resize"] == "exact" || j["resize"] == "center",
           "{} must be \"exact\" or \"center\", got {}", key("resize"), j["resize"].dump());
  p.resize = j["resize"].get<std::string>();
  p.crop_pct = json_to_number(j["crop_pct"], key("crop_pct"), 1e-3, 1.0);
  p.mean = float_list(j["mean"], key("mean"), -1e3, 1e3);
  p.std = float_list(j["std"], key("std"), 1e-6, 1e3);
  NV_CHECK(j["gray_to_rgb"].is_boolean(), "{} must be true or false", key("gray_to_rgb"));
  p.gray_to_rgb = j["gray_to_rgb"].get<bool>();
  return p;
}

const char* form_name(ModelForm form) {
  return form == ModelForm::Deploy ? "deploy" : "train";
}

std::map<std::string, std::string> metadata_entries(const ModelMetadata& m) {
  std::map<std::string, std::string> out;
  if (m.config) out[kConfigKey] = m.config->to_json().dump();
  if (m.preprocess) out[kPreprocessKey] = m.preprocess->to_json().dump();
  if (!m.classes.empty()) out[kClassesKey] = nlohmann::json(m.classes).dump();
  out[kFormKey] = form_name(m.form);
  return out;
}

ModelMetadata parse_metadata(const std::map<std::string, std::string>& entries,
                             const std::string& source) {
  ModelMetadata m;
  auto value = [&](const char* key) -> const std::string* {
    auto it = entries.find(key);
    return it == entries.end() ? nullptr : &it->second;
  };
  auto where = [&](const char* key) { return fmt::format("{} (metadata \"{}\")", source, key); };
  if (const std::string* s = value(kConfigKey)) {
    m.config = NextViTConfig::from_json(parse_json_text(*s, where(kConfigKey)), where(kConfigKey));
    m.config->validate();
  }
  if (const std::string* s = value(kPreprocessKey)) {
    m.preprocess =
        Preprocess::from_json(parse_json_text(*s, where(kPreprocessKey)), where(kPreprocessKey));
  }
  if (const std::string* s = value(kClassesKey)) {
    const nlohmann::json j = parse_json_text(*s, where(kClassesKey));
    NV_CHECK(j.is_array() && !j.empty() && static_cast<int64_t>(j.size()) <= kMaxClasses,
             "{}: expected a non-empty list of class names", where(kClassesKey));
    for (const auto& name : j) {
      NV_CHECK(name.is_string(), "{}: class name {} is not a string", where(kClassesKey),
               name.dump());
      m.classes.push_back(name.get<std::string>());
    }
  }
  if (const std::string* s = value(kFormKey)) {
    NV_CHECK(*s == "train" || *s == "deploy", "{}: expected \"train\" or \"deploy\", got \"{}\"",
             where(kFormKey), *s);
    m.form = *s == "deploy" ? ModelForm::Deploy : ModelForm::Train;
  }
  NV_CHECK(m.classes.empty() || !m.config ||
               static_cast<int64_t>(m.classes.size()) == m.config->num_classes,
           "{}: {} class names for a model of {} classes", source, m.classes.size(),
           m.config ? m.config->num_classes : 0);
  return m;
}

}  // namespace nextvit
