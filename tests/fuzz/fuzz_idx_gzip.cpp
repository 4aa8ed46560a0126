// The Fashion-MNIST readers: gzip (header fields, deflate, trailer) and IDX, alone and chained
// as read_idx does. The inflate limit is lowered to 64 MiB to stay within -rss_limit_mb.
#include "fuzz_util.h"
#include "train/data/gzip.h"
#include "train/data/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run([&] {
    std::vector<uint8_t> bytes(data, data + size);
    if (nextvit::data::is_gzip(data, size)) {
      bytes = nextvit::data::gunzip(data, size, "fuzz input", 64u << 20);
    }
    (void)nextvit::data::parse_idx(bytes, "fuzz input");
  });
}
