// Image decoding: the guard (JPEG Huffman tables, BMP sizes, pixel limit) on a prefix as the
// folder scan does, then the full decode. The pixel limit is lowered to 4 M so one input
// stays far below -rss_limit_mb.
#include "fuzz_util.h"
#include "train/data/image_folder.h"
#include "train/data/image_guard.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run([&] {
    constexpr int64_t kPixels = int64_t(1) << 22;
    int w = 0, h = 0;
    std::string reason;
    (void)nextvit::data::check_image_bytes(data, size / 2, false, kPixels, w, h, reason);
    nextvit::data::Image img;
    if (nextvit::data::decode_image_bytes(std::vector<uint8_t>(data, data + size), img, reason,
                                          kPixels)) {
      if (img.pixels.size() != size_t(img.height) * img.width * 3) std::abort();
    }
  });
}
