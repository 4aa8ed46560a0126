#include "models/weights.h"

#include <map>
#include <regex>

#include "core/safetensors.h"

namespace nextvit {
namespace {

// Block index of the first block of each stage.
std::vector<int64_t> stage_offsets(const NextViTConfig& c) {
  std::vector<int64_t> offsets;
  int64_t acc = 0;
  for (const auto& s : c.stage_channels) {
    offsets.push_back(acc);
    acc += static_cast<int64_t>(s.size());
  }
  return offsets;
}

std::string replace_first(std::string s, const std::string& from, const std::string& to) {
  size_t pos = s.find(from);
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

std::string list_keys(const std::vector<std::string>& keys) {
  std::string out;
  const size_t shown = std::min<size_t>(keys.size(), 8);
  for (size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + keys[i];
  if (keys.size() > shown) out += fmt::format(" (and {} more)", keys.size() - shown);
  return out;
}

}  // namespace

WeightLayout detect_layout(const NamedTensors& tensors) {
  for (const auto& [name, t] : tensors) {
    if (name.rfind("stages.", 0) == 0 || name.rfind("head.fc.", 0) == 0) return WeightLayout::Timm;
  }
  return WeightLayout::Official;
}

std::string timm_to_official(const std::string& name, const NextViTConfig& config) {
  static const std::regex block_re(R"(^stages\.(\d+)\.blocks\.(\d+)\.(.*)$)");
  std::smatch m;
  std::string out = name;
  if (std::regex_match(name, m, block_re)) {
    const size_t stage = std::stoul(m[1]);
    const int64_t block = std::stoll(m[2]);
    std::vector<int64_t> offsets = stage_offsets(config);
    NV_CHECK(
        stage < offsets.size() && block < static_cast<int64_t>(config.stage_channels[stage].size()),
        "weights: '{}' names a block that {} does not have", name, config.name);
    out = fmt::format("features.{}.{}", offsets[stage] + block, std::string(m[3]));
    out = replace_first(out, ".mlp.fc1.", ".mlp.conv1.");
    out = replace_first(out, ".mlp.fc2.", ".mlp.conv2.");
  } else if (name.rfind("head.fc.", 0) == 0) {
    out = "proj_head.0." + name.substr(8);
  }
  return out;
}

std::string official_to_timm(const std::string& name, const NextViTConfig& config) {
  static const std::regex block_re(R"(^features\.(\d+)\.(.*)$)");
  std::smatch m;
  if (std::regex_match(name, m, block_re)) {
    int64_t block = std::stoll(m[1]);
    std::vector<int64_t> offsets = stage_offsets(config);
    size_t stage = offsets.size() - 1;
    while (stage > 0 && offsets[stage] > block) --stage;
    std::string out =
        fmt::format("stages.{}.blocks.{}.{}", stage, block - offsets[stage], std::string(m[2]));
    out = replace_first(out, ".mlp.conv1.", ".mlp.fc1.");
    return replace_first(out, ".mlp.conv2.", ".mlp.fc2.");
  }
  if (name.rfind("proj_head.0.", 0) == 0) return "head.fc." + name.substr(12);
  return name;
}

WeightLayout load_state_dict(NextViT& model, const NamedTensors& tensors) {
  const WeightLayout layout = detect_layout(tensors);
  std::map<std::string, Tensor> given;
  for (const auto& [name, t] : tensors) {
    std::string key = layout == WeightLayout::Timm ? timm_to_official(name, model.config()) : name;
    NV_CHECK(given.emplace(key, t).second, "weights: tensor '{}' appears twice", key);
  }

  // Every slot the model has, parameters and buffers, with its current tensor.
  std::vector<std::string> missing, wrong_shape;
  std::map<std::string, bool> used;
  auto take = [&](const std::string& name, const Tensor& current) -> Tensor {
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
      return {};
    }
    used[name] = true;
    if (it->second.shape() != current.shape()) {
      wrong_shape.push_back(fmt::format("{} (file {}, model {})", name,
                                        shape_str(it->second.shape()), shape_str(current.shape())));
      return {};
    }
    return it->second;
  };

  std::vector<std::pair<Variable, Tensor>> param_updates;
  for (auto& [name, v] : model.named_parameters()) {
    Tensor t = take(name, v.data());
    if (t.defined()) param_updates.emplace_back(v, t);
  }
  std::vector<std::pair<Tensor*, Tensor>> buffer_updates;
  for (auto& [name, slot] : model.named_buffers()) {
    Tensor t = take(name, *slot);
    if (t.defined()) buffer_updates.emplace_back(slot, t);
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : given) {
    if (!used.count(name)) unexpected.push_back(name);
  }
  const char* layout_name = layout == WeightLayout::Timm ? "timm" : "official";
  NV_CHECK(missing.empty(), "weights ({} layout) for {}: missing {} tensor(s): {}", layout_name,
           model.config().name, missing.size(), list_keys(missing));
  NV_CHECK(unexpected.empty(), "weights ({} layout) for {}: {} unexpected tensor(s): {}",
           layout_name, model.config().name, unexpected.size(), list_keys(unexpected));
  NV_CHECK(wrong_shape.empty(), "weights ({} layout) for {}: {} tensor(s) with the wrong shape: {}",
           layout_name, model.config().name, wrong_shape.size(), list_keys(wrong_shape));

  // All checks passed: only now change the model, so a failed load leaves it untouched.
  for (auto& [v, t] : param_updates) {
    NV_CHECK(t.dtype() != DType::I64, "weights: parameter tensor is integer-typed");
    v.data().copy_(t.to(DType::F32).to(v.device()));
  }
  for (auto& [slot, t] : buffer_updates) {
    Tensor converted = t.to(slot->dtype());
    *slot = converted.to(slot->device()).clone();
  }
  return layout;
}

WeightLayout load_weights(NextViT& model, const std::string& path) {
  NamedTensors tensors = read_safetensors(path).tensors();
  try {
    return load_state_dict(model, tensors);
  } catch (const Error& e) {
    NV_FAIL("{}: {}", path, e.what());
  }
}

void save_weights(const Module& model, const std::string& path) {
  write_safetensors(path, model.state_dict());
}

}  // namespace nextvit
