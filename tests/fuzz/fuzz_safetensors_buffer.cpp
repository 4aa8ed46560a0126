// safetensors from memory: header length, JSON, entries, tiling, tensor bytes.
#include "core/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run([&] {
    nextvit::SafeTensors f =
        nextvit::parse_safetensors(std::string(reinterpret_cast<const char*>(data), size));
    for (const auto& nt : f.tensors()) (void)nt.second.nbytes();
  });
}
