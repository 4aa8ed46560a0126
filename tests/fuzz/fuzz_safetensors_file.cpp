// safetensors from a file (the stream path: size from seeking, reads at offsets), then a
// write/read round trip of whatever was accepted.
#include "core/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run([&] {
    const std::string path = fuzz::write_scratch("in.safetensors", data, size);
    nextvit::SafeTensors f = nextvit::read_safetensors(path);
    const std::string out = (fuzz::scratch() / "out.safetensors").string();
    nextvit::write_safetensors(out, f);
    nextvit::SafeTensors back = nextvit::read_safetensors(out);
    if (back.names() != f.names()) std::abort();  // a round trip must keep the tensors
  });
}
