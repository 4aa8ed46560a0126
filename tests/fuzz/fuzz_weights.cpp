// Weight loading into a model: layout detection, timm <-> official names, shapes and dtypes,
// for a small Next-ViT built once.
#include "core/safetensors.h"
#include "fuzz_util.h"
#include "models/weights.h"

namespace {
nextvit::NextViT& model() {
  static nextvit::NextViT m(
      nextvit::NextViTConfig::from_json(nlohmann::json::parse(fuzz::kModelJson)));
  return m;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run([&] {
    nextvit::SafeTensors f =
        nextvit::parse_safetensors(std::string(reinterpret_cast<const char*>(data), size));
    nextvit::load_state_dict(model(), f.tensors());
  });
}
