#pragma once
// Image: the sample format between a data set and the transforms. Pixels stay uint8 in HWC order
// (as decoders produce them and as PIL holds them) through every geometric and random step, which
// keeps samples small and lets flips and crops be exact byte moves; only the last step of a
// Pipeline turns them into normalised float CHW, written straight into the batch tensor.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace nextvit::data {

struct Image {
  int height = 0;
  int width = 0;
  int channels = 0;             // 1 (gray) or 3 (RGB)
  std::vector<uint8_t> pixels;  // height * width * channels bytes, row-major HWC

  Image() = default;
  Image(int h, int w, int c) : height(h), width(w), channels(c), pixels(size_t(h) * w * c) {}

  uint8_t& at(int y, int x, int c) { return pixels[(size_t(y) * width + x) * channels + c]; }
  uint8_t at(int y, int x, int c) const { return pixels[(size_t(y) * width + x) * channels + c]; }
};

}  // namespace nextvit::data
