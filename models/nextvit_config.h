#pragma once
// NextViTConfig: everything that decides a Next-ViT's shape. nextvit_small/base/large are the
// paper's models; from_json() reads reduced ones (tests, CPU training) with the same blocks.
//
// A configuration that cannot work is refused by validate() before any tensor is allocated,
// and an input size too small for the pooling windows by validate_input().
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nextvit {

enum class BlockType { NCB, NTB };

// Bounds on what a configuration may ask for. Far above any real Next-ViT (widest layer 1024,
// 1000 classes), low enough that no size or count derived from them overflows int64.
constexpr int64_t kMaxChannels = 1 << 16;
constexpr int64_t kMaxClasses = 1 << 24;
constexpr int64_t kMaxStages = 16;
constexpr int64_t kMaxBlocksPerStage = 1024;
constexpr int64_t kMaxSrRatio = 1024;
constexpr double kMaxMlpRatio = 64.0;
constexpr int64_t kMaxImageSide = 1 << 15;

struct NextViTConfig {
  std::string name = "custom";
  int64_t in_channels = 3;
  std::array<int64_t, 3> stem_channels{64, 32, 64};
  // Per stage, per block: output channels and block type (official stage_out_channels and
  // stage_block_types). Blocks are numbered 0.. across stages ("features.{i}").
  std::vector<std::vector<int64_t>> stage_channels;
  std::vector<std::vector<BlockType>> stage_types;
  std::vector<int64_t> strides{1, 2, 2, 2};
  std::vector<int64_t> sr_ratios{8, 4, 2, 1};
  int64_t head_dim = 32;  // also the make_divisible divisor of MLP widths and the NTB split
  double mix_block_ratio = 0.75;
  double ncb_mlp_ratio = 3.0;
  double ntb_mlp_ratio = 2.0;
  float drop_path = 0.1f;  // maximum; block i gets linspace(0, drop_path, blocks)[i]
  int64_t num_classes = 1000;

  // The paper's models, stage lists built by the official Next Hybrid Strategy from depths.
  static NextViTConfig from_depths(const std::string& name, const std::array<int64_t, 4>& depths,
                                   float drop_path);
  static NextViTConfig small();
  static NextViTConfig base();
  static NextViTConfig large();
  // A small Next-ViT for 28x28 Fashion-MNIST on a CPU: the same blocks, head_dim 16, one NCB and
  // one NTB per stage, widths 64/128/192/256, sr (2, 2, 1, 1) so every pooling window fits the
  // 7x7 and 4x4 token grids of the first two stages.
  static NextViTConfig fmnist();
  // "nextvit_small" | "nextvit_base" | "nextvit_large" | "nextvit_fmnist" | a JSON file.
  static NextViTConfig from_name(const std::string& name_or_path);
  // Validates every field (types, integers that are integers, ranges, list lengths, no unknown
  // keys); `source` names the file in errors.
  static NextViTConfig from_json(const nlohmann::json& j, const std::string& source = "<json>");
  nlohmann::json to_json() const;

  int64_t num_blocks() const;
  int64_t out_channels() const { return stage_channels.back().back(); }
  // Drop-path rate of block i, linspace(0, drop_path, num_blocks())[i] in float, as torch.
  float drop_path_rate(int64_t block) const;

  void validate() const;
  void validate_input(int64_t height, int64_t width) const;
};

}  // namespace nextvit
