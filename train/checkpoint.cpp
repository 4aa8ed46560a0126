#include "train/checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/json_input.h"
#include "core/safetensors.h"
#include "models/weights.h"

namespace nextvit {
namespace fs = std::filesystem;

namespace {

const char* kTensors = "checkpoint.safetensors";
const char* kJson = "checkpoint.json";
const char* kWeights = "model.safetensors";

nlohmann::json info_to_json(const CheckpointInfo& info, int64_t optimizer_steps) {
  return {{"format", "nextvit-checkpoint-1"},
          {"epoch", info.epoch},
          {"step", info.step},
          {"optimizer_steps", optimizer_steps},
          {"loader", {{"epoch", info.loader.epoch}, {"batch", info.loader.batch}}},
          {"config", info.config},
          {"options", info.options},
          {"history", info.history}};
}

// Every number is checked to be an integer in range (no float-to-int casts of 1e300), and every
// error names the file and the key.
CheckpointInfo info_from_json(const nlohmann::json& j, const std::string& where) {
  const std::string what = where + ": not a nextvit checkpoint";
  NV_CHECK(j.is_object(), "{} (the metadata is {}, not an object)", what, j.type_name());
  auto field = [&](const nlohmann::json& obj, const char* key) -> const nlohmann::json& {
    NV_CHECK(obj.is_object() && obj.contains(key), "{} (\"{}\" is missing)", what, key);
    return obj.at(key);
  };
  auto count = [&](const nlohmann::json& obj, const char* key) {
    return json_to_int(field(obj, key), fmt::format("{}: \"{}\"", where, key), 0,
                       std::numeric_limits<int64_t>::max() / 2);
  };
  NV_CHECK(field(j, "format") == "nextvit-checkpoint-1", "{} (unknown format {})", what,
           field(j, "format").dump());
  CheckpointInfo info;
  info.epoch = count(j, "epoch");
  info.step = count(j, "step");
  info.loader.epoch = count(field(j, "loader"), "epoch");
  info.loader.batch = count(field(j, "loader"), "batch");
  info.config = field(j, "config");
  info.options = field(j, "options");
  NV_CHECK(info.config.is_object() && info.options.is_object(),
           "{} (\"config\" and \"options\" must be objects)", what);
  info.history = j.value("history", nlohmann::json::array());
  NV_CHECK(info.history.is_array(), "{} (\"history\" must be a list)", what);
  return info;
}

// The JSON document a checkpoint keeps in its safetensors metadata.
nlohmann::json checkpoint_json(const SafeTensors& file, const std::string& path) {
  auto it = file.metadata.find("nextvit");
  NV_CHECK(it != file.metadata.end(), "{}: no nextvit metadata; not a training checkpoint", path);
  return parse_json_text(it->second, path + " (nextvit metadata)");
}

void write_text_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    NV_CHECK(out.good(), "cannot write {}", tmp.string());
    out << text;
    out.flush();
    NV_CHECK(out.good(), "writing {} failed (disk full?)", tmp.string());
  }
  fs::rename(tmp, path);
}

// The drop-path generator's state as an i64 tensor (the bits of each word, unchanged).
Tensor rng_tensor(const Generator& g) {
  auto s = g.state();
  std::vector<int64_t> words(4);
  for (int i = 0; i < 4; ++i) words[i] = static_cast<int64_t>(s[i]);
  return Tensor::from_vector_i64(words, {4});
}

}  // namespace

bool checkpoint_exists(const std::string& dir) {
  return fs::exists(fs::path(dir) / kTensors);
}

void save_checkpoint(const std::string& dir, const NextViT& model, const Optimizer& optimizer,
                     const ModelEma* ema, const CheckpointInfo& info) {
  fs::create_directories(dir);
  NamedTensors tensors;
  for (auto& [name, t] : model.state_dict()) tensors.emplace_back("model." + name, t);
  for (auto& [name, t] : optimizer.state_dict()) tensors.emplace_back("optim." + name, t);
  if (ema) {
    for (auto& [name, t] : ema->state_dict()) tensors.emplace_back("ema." + name, t);
  }
  tensors.emplace_back("rng.drop_path",
                       rng_tensor(const_cast<NextViT&>(model).drop_path_generator()));
  const nlohmann::json j = info_to_json(info, optimizer.step_count());
  // write_safetensors writes to a temporary file and renames it.
  write_safetensors((fs::path(dir) / kTensors).string(), tensors, {{"nextvit", j.dump()}});
  write_text_atomic(fs::path(dir) / kJson, j.dump(2) + "\n");
  // The deployable weights: the EMA's when there is one (what evaluation reports), else the
  // model's.
  if (ema) {
    write_safetensors((fs::path(dir) / kWeights).string(), ema->state_dict(), info.model_metadata);
  } else {
    save_weights(model, (fs::path(dir) / kWeights).string(), info.model_metadata);
  }
}

CheckpointInfo read_checkpoint_info(const std::string& dir) {
  const std::string path = (fs::path(dir) / kTensors).string();
  return info_from_json(checkpoint_json(read_safetensors(path), path), path);
}

CheckpointInfo load_checkpoint(const std::string& dir, NextViT& model, Optimizer& optimizer,
                               ModelEma* ema) {
  const std::string path = (fs::path(dir) / kTensors).string();
  SafeTensors file = read_safetensors(path);
  const nlohmann::json j = checkpoint_json(file, path);
  CheckpointInfo info = info_from_json(j, path);

  NamedTensors model_state, optim_state, ema_state;
  Tensor rng;
  for (auto& [name, t] : file.tensors()) {
    if (name.rfind("model.", 0) == 0)
      model_state.emplace_back(name.substr(6), t);
    else if (name.rfind("optim.", 0) == 0)
      optim_state.emplace_back(name.substr(6), t);
    else if (name.rfind("ema.", 0) == 0)
      ema_state.emplace_back(name.substr(4), t);
    else if (name == "rng.drop_path")
      rng = t;
    else
      NV_FAIL("{}: unexpected tensor '{}'", path, name);
  }
  try {
    load_state_dict(model, model_state);
    optimizer.load_state_dict(optim_state, json_to_int(j.value("optimizer_steps", nlohmann::json()),
                                                       path + ": \"optimizer_steps\"", 0,
                                                       std::numeric_limits<int64_t>::max() / 2));
    if (ema) {
      NV_CHECK(!ema_state.empty(), "the checkpoint has no EMA weights but EMA is enabled");
      ema->load_state_dict(ema_state);
    }
  } catch (const Error& e) {
    NV_FAIL("{}: {}", path, e.what());
  }
  NV_CHECK(rng.defined() && rng.numel() == 4, "{}: missing rng.drop_path", path);
  std::vector<int64_t> words = rng.to_vector_i64();
  std::array<uint64_t, 4> state;
  for (int i = 0; i < 4; ++i) state[i] = static_cast<uint64_t>(words[i]);
  model.drop_path_generator().set_state(state);
  return info;
}

}  // namespace nextvit
