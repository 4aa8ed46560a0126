// A training checkpoint: checkpoint.safetensors with its JSON metadata, read into a small
// model, its AdamW state and an EMA.
#include <filesystem>

#include "fuzz_util.h"
#include "train/checkpoint.h"
#include "train/optim/adamw.h"

namespace {
struct State {
  nextvit::NextViT model{
      nextvit::NextViTConfig::from_json(nlohmann::json::parse(fuzz::kModelJson))};
  nextvit::AdamW optimizer{nextvit::weight_decay_groups(model, 0.05), nextvit::AdamWOptions{}};
  nextvit::ModelEma ema{model, 0.9};
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static State* s = new State;
  return fuzz::run([&] {
    const auto dir = fuzz::scratch() / "ckpt";
    std::filesystem::create_directories(dir);
    fuzz::write_scratch("ckpt/checkpoint.safetensors", data, size);
    (void)nextvit::read_checkpoint_info(dir.string());
    nextvit::load_checkpoint(dir.string(), s->model, s->optimizer, &s->ema);
  });
}
