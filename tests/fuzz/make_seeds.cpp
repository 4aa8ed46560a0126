// Writes the seed inputs that need the library to produce: the fuzz model's weights in both
// layouts and a training checkpoint of it. Run once from tests/fuzz/ (tools/fuzz.sh does not;
// the outputs are committed under corpus/):
//   /tmp/build-fuzz/fuzz_make_seeds tests/fuzz/corpus
#include <filesystem>

#include "core/safetensors.h"
#include "fuzz_util.h"
#include "models/weights.h"
#include "train/checkpoint.h"
#include "train/optim/adamw.h"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  using namespace nextvit;
  const fs::path out = argc > 1 ? argv[1] : "corpus";
  NextViT model(NextViTConfig::from_json(nlohmann::json::parse(fuzz::kModelJson)));
  fs::create_directories(out / "fuzz_weights");
  save_weights(model, (out / "fuzz_weights" / "official.safetensors").string());
  NamedTensors timm;
  for (const auto& [name, t] : model.state_dict()) {
    timm.emplace_back(official_to_timm(name, model.config()), t);
  }
  write_safetensors((out / "fuzz_weights" / "timm.safetensors").string(), timm);

  AdamW optimizer(weight_decay_groups(model, 0.05));
  ModelEma ema(model, 0.9);
  CheckpointInfo info;
  info.config = model.config().to_json();
  info.options = {{"note", "fuzz seed"}};
  info.epoch = 1;
  info.step = 3;
  const fs::path dir = fs::temp_directory_path() / "nextvit-fuzz-seed-ckpt";
  save_checkpoint(dir.string(), model, optimizer, &ema, info);
  fs::create_directories(out / "fuzz_checkpoint");
  fs::copy_file(dir / "checkpoint.safetensors", out / "fuzz_checkpoint" / "checkpoint.safetensors",
                fs::copy_options::overwrite_existing);
  fs::remove_all(dir);
  return 0;
}
