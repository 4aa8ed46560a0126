// Model configuration JSON: strict parsing, every field's type and range, then the checks
// that use it (input sizes, memory estimate, MAC-relevant sizes).
#include "core/json_input.h"
#include "fuzz_util.h"
#include "models/memory_estimate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run([&] {
    const nlohmann::json j =
        nextvit::parse_json_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    nextvit::NextViTConfig c = nextvit::NextViTConfig::from_json(j, "fuzz");
    c.validate_input(224, 224);
    (void)nextvit::estimate_memory(c, 128, 224, 224, true);
    (void)c.to_json().dump();
  });
}
