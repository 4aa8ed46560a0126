#pragma once
// Parameter and multiply-accumulate counts of a Next-ViT, per stage and in total, at a given
// input size. MACs count what dominates the cost and what the paper counts: convolutions,
// linear layers and the two attention products (q k^T and attn v); normalisation, activations
// and pooling are not counted. Parameters are counted from the built model itself.
// The count is kept per part (module path and op kind, as the profiler names them), and the
// stages' counts are sums of their parts, so a profile (models/profile.h) reads its MACs here.
#include <cstdint>
#include <string>
#include <vector>

#include "core/profiler.h"
#include "models/nextvit.h"

namespace nextvit {

struct StageInfo {
  std::string name;  // "stem", "stage1".."stage4", "head"
  int64_t params = 0;
  int64_t macs = 0;
  int64_t channels = 0, height = 0, width = 0;  // output of the stage
};

// One counted product: a conv, a linear layer, or E-MHSA's two attention products.
struct PartMacs {
  std::string path;  // module path: "stem.0", "features.3.mhca", "features.9.e_mhsa", "head"
  profiler::OpKind kind = profiler::OpKind::None;
  int64_t macs = 0;
};

struct ModelInfo {
  std::string model;
  int64_t image_height = 0, image_width = 0;
  std::vector<StageInfo> stages;
  int64_t params = 0, macs = 0;
  std::vector<PartMacs> parts;  // in forward order; stage MACs are sums of these
};

ModelInfo analyze(const NextViT& model, int64_t height, int64_t width);

}  // namespace nextvit
