#pragma once
// Parameter and multiply-accumulate counts of a Next-ViT, per stage and in total, at a given
// input size. MACs count what dominates the cost and what the paper counts: convolutions,
// linear layers and the two attention products (q k^T and attn v); normalisation, activations
// and pooling are not counted. Parameters are counted from the built model itself.
#include <cstdint>
#include <string>
#include <vector>

#include "models/nextvit.h"

namespace nextvit {

struct StageInfo {
  std::string name;  // "stem", "stage1".."stage4", "head"
  int64_t params = 0;
  int64_t macs = 0;
  int64_t channels = 0, height = 0, width = 0;  // output of the stage
};

struct ModelInfo {
  std::string model;
  int64_t image_height = 0, image_width = 0;
  std::vector<StageInfo> stages;
  int64_t params = 0, macs = 0;
};

ModelInfo analyze(const NextViT& model, int64_t height, int64_t width);

}  // namespace nextvit
