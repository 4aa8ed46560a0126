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

// A decimal index from a tensor name; -1 when it has too many digits to be one.
int64_t parse_index(const std::string& digits) {
  if (digits.empty() || digits.size() > 9) return -1;
  return std::stoll(digits);
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
    // Indices may have any number of digits in a hostile file: parsed without std::stoul,
    // whose out_of_range would escape as a bare "stoul".
    const int64_t stage = parse_index(m[1]), block = parse_index(m[2]);
    std::vector<int64_t> offsets = stage_offsets(config);
    NV_CHECK(stage >= 0 && stage < static_cast<int64_t>(offsets.size()) && block >= 0 &&
                 block < static_cast<int64_t>(config.stage_channels[stage].size()),
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
    const int64_t block = parse_index(m[1]);
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
  const NextViTConfig& config = model.config();
  // Messages name tensors as the file does: timm keys for a timm file, official ones otherwise.
  // `file_name` maps each official key back to the name the file used.
  std::map<std::string, Tensor> given;
  std::map<std::string, std::string> file_name;
  for (const auto& [name, t] : tensors) {
    std::string key = layout == WeightLayout::Timm ? timm_to_official(name, config) : name;
    NV_CHECK(given.emplace(key, t).second, "weights: tensor '{}' appears twice{}", name,
             key == name ? "" : fmt::format(" (as '{}' and '{}')", file_name[key], name));
    file_name[key] = name;
  }
  auto user_name = [&](const std::string& official) {
    auto it = file_name.find(official);
    if (it != file_name.end()) return it->second;
    return layout == WeightLayout::Timm ? official_to_timm(official, config) : official;
  };

  // Every slot the model has, parameters and buffers, with its current tensor.
  std::vector<std::string> missing, wrong;
  std::map<std::string, bool> used;
  auto take = [&](const std::string& name, const Tensor& current, bool parameter) -> Tensor {
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(user_name(name));
      return {};
    }
    used[name] = true;
    if (it->second.shape() != current.shape()) {
      wrong.push_back(fmt::format("{} (file {}, model {})", user_name(name),
                                  shape_str(it->second.shape()), shape_str(current.shape())));
      return {};
    }
    if (parameter && it->second.dtype() == DType::I64) {
      wrong.push_back(
          fmt::format("{} (integer-typed, a parameter must be floating point)", user_name(name)));
      return {};
    }
    return it->second;
  };

  std::vector<std::pair<Variable, Tensor>> param_updates;
  for (auto& [name, v] : model.named_parameters()) {
    Tensor t = take(name, v.data(), true);
    if (t.defined()) param_updates.emplace_back(v, t);
  }
  std::vector<std::pair<Tensor*, Tensor>> buffer_updates;
  for (auto& [name, slot] : model.named_buffers()) {
    Tensor t = take(name, *slot, false);
    if (t.defined()) buffer_updates.emplace_back(slot, t);
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : given) {
    if (!used.count(name)) unexpected.push_back(file_name[name]);
  }
  const char* layout_name = layout == WeightLayout::Timm ? "timm" : "official";
  NV_CHECK(missing.empty(), "weights ({} layout) for {}: missing {} tensor(s): {}", layout_name,
           config.name, missing.size(), list_keys(missing));
  NV_CHECK(unexpected.empty(), "weights ({} layout) for {}: {} unexpected tensor(s): {}",
           layout_name, config.name, unexpected.size(), list_keys(unexpected));
  NV_CHECK(wrong.empty(),
           "weights ({} layout) for {}: {} tensor(s) with the wrong shape or type: {}", layout_name,
           config.name, wrong.size(), list_keys(wrong));

  // All checks passed: only now change the model, so a failed load leaves it untouched.
  for (auto& [v, t] : param_updates) v.data().copy_(t.to(DType::F32).to(v.device()));
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

void save_weights(const Module& model, const std::string& path,
                  const std::map<std::string, std::string>& metadata) {
  write_safetensors(path, model.state_dict(), metadata);
}

}  // namespace nextvit
