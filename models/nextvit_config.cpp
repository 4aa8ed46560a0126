#include "models/nextvit_config.h"

#include <fstream>

#include "core/error.h"
#include "layers/ntb.h"

namespace nextvit {

NextViTConfig NextViTConfig::from_depths(const std::string& name, const std::array<int64_t, 4>& d,
                                         float drop_path) {
  NV_CHECK(d[2] % 5 == 0, "{}: stage-3 depth {} must be a multiple of 5", name, d[2]);
  NextViTConfig c;
  c.name = name;
  c.drop_path = drop_path;
  using B = BlockType;
  c.stage_channels = {std::vector<int64_t>(d[0], 96),
                      std::vector<int64_t>(d[1] - 1, 192),
                      {},
                      std::vector<int64_t>(d[3] - 1, 768)};
  c.stage_channels[1].push_back(256);
  c.stage_channels[3].push_back(1024);
  c.stage_types = {std::vector<B>(d[0], B::NCB),
                   std::vector<B>(d[1] - 1, B::NCB),
                   {},
                   std::vector<B>(d[3] - 1, B::NCB)};
  c.stage_types[1].push_back(B::NTB);
  c.stage_types[3].push_back(B::NTB);
  for (int64_t r = 0; r < d[2] / 5; ++r) {
    for (int64_t w : {384, 384, 384, 384, 512}) c.stage_channels[2].push_back(w);
    for (B t : {B::NCB, B::NCB, B::NCB, B::NCB, B::NTB}) c.stage_types[2].push_back(t);
  }
  return c;
}

NextViTConfig NextViTConfig::small() {
  return from_depths("nextvit_small", {3, 4, 10, 3}, 0.1f);
}
NextViTConfig NextViTConfig::base() {
  return from_depths("nextvit_base", {3, 4, 20, 3}, 0.2f);
}
NextViTConfig NextViTConfig::large() {
  return from_depths("nextvit_large", {3, 4, 30, 3}, 0.2f);
}

NextViTConfig NextViTConfig::fmnist() {
  NextViTConfig c;
  c.name = "nextvit_fmnist";
  c.stem_channels = {32, 32, 64};
  c.head_dim = 16;
  c.stage_channels = {{64, 64}, {128, 128}, {192, 192}, {256, 256}};
  c.stage_types.assign(4, {BlockType::NCB, BlockType::NTB});
  c.sr_ratios = {2, 2, 1, 1};
  c.drop_path = 0.0f;
  c.num_classes = 10;
  return c;
}

NextViTConfig NextViTConfig::from_name(const std::string& name) {
  if (name == "nextvit_fmnist") return fmnist();
  if (name == "nextvit_small") return small();
  if (name == "nextvit_base") return base();
  if (name == "nextvit_large") return large();
  std::ifstream in(name);
  NV_CHECK(in.good(),
           "unknown model '{}': expected nextvit_small, nextvit_base, nextvit_large, "
           "nextvit_fmnist or the path of a JSON configuration",
           name);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    NV_FAIL("model configuration {}: not valid JSON ({})", name, e.what());
  }
  NextViTConfig c = from_json(j);
  if (c.name == "custom") c.name = name;
  return c;
}

namespace {
BlockType parse_block_type(const std::string& s) {
  if (s == "NCB") return BlockType::NCB;
  if (s == "NTB") return BlockType::NTB;
  NV_FAIL("model configuration: block type '{}' is neither NCB nor NTB", s);
}
}  // namespace

NextViTConfig NextViTConfig::from_json(const nlohmann::json& j) {
  NextViTConfig c;
  try {
    c.name = j.value("name", c.name);
    c.in_channels = j.value("in_channels", c.in_channels);
    if (j.contains("stem_chs")) c.stem_channels = j.at("stem_chs").get<std::array<int64_t, 3>>();
    c.stage_channels = j.at("stage_out_channels").get<std::vector<std::vector<int64_t>>>();
    for (const auto& stage : j.at("stage_block_types")) {
      c.stage_types.emplace_back();
      for (const auto& t : stage) c.stage_types.back().push_back(parse_block_type(t));
    }
    c.strides = j.value("strides", c.strides);
    c.sr_ratios = j.value("sr_ratios", c.sr_ratios);
    c.head_dim = j.value("head_dim", c.head_dim);
    c.mix_block_ratio = j.value("mix_block_ratio", c.mix_block_ratio);
    c.ncb_mlp_ratio = j.value("ncb_mlp_ratio", c.ncb_mlp_ratio);
    c.ntb_mlp_ratio = j.value("ntb_mlp_ratio", c.ntb_mlp_ratio);
    c.drop_path = j.value("drop_path", c.drop_path);
    c.num_classes = j.value("num_classes", c.num_classes);
  } catch (const nlohmann::json::exception& e) {
    NV_FAIL("model configuration: {}", e.what());
  }
  c.validate();
  return c;
}

nlohmann::json NextViTConfig::to_json() const {
  nlohmann::json types = nlohmann::json::array();
  for (const auto& stage : stage_types) {
    nlohmann::json s = nlohmann::json::array();
    for (BlockType t : stage) s.push_back(t == BlockType::NCB ? "NCB" : "NTB");
    types.push_back(s);
  }
  return {{"name", name},
          {"in_channels", in_channels},
          {"stem_chs", stem_channels},
          {"stage_out_channels", stage_channels},
          {"stage_block_types", types},
          {"strides", strides},
          {"sr_ratios", sr_ratios},
          {"head_dim", head_dim},
          {"mix_block_ratio", mix_block_ratio},
          {"ncb_mlp_ratio", ncb_mlp_ratio},
          {"ntb_mlp_ratio", ntb_mlp_ratio},
          {"drop_path", drop_path},
          {"num_classes", num_classes}};
}

int64_t NextViTConfig::num_blocks() const {
  int64_t n = 0;
  for (const auto& s : stage_channels) n += static_cast<int64_t>(s.size());
  return n;
}

float NextViTConfig::drop_path_rate(int64_t block) const {
  const int64_t n = num_blocks();
  if (n <= 1) return 0.0f;
  // torch.linspace's float rule: the first half counts up from the start, the second half down
  // from the end, so both end points are exact.
  const float step = drop_path / static_cast<float>(n - 1);
  if (block < n / 2) return static_cast<float>(block) * step;
  return drop_path - step * static_cast<float>(n - 1 - block);
}

void NextViTConfig::validate() const {
  const std::string& m = name;
  NV_CHECK(in_channels > 0, "{}: in_channels must be positive", m);
  for (int64_t s : stem_channels) NV_CHECK(s > 0, "{}: stem channels must be positive", m);
  NV_CHECK(num_classes > 0, "{}: num_classes must be positive, got {}", m, num_classes);
  NV_CHECK(head_dim > 0, "{}: head_dim must be positive, got {}", m, head_dim);
  NV_CHECK(drop_path >= 0.0f && drop_path < 1.0f, "{}: drop_path must be in [0, 1), got {}", m,
           drop_path);
  NV_CHECK(mix_block_ratio > 0 && mix_block_ratio < 1, "{}: mix_block_ratio must be in (0, 1)", m);
  const size_t stages = stage_channels.size();
  NV_CHECK(stages > 0, "{}: no stages", m);
  NV_CHECK(stage_types.size() == stages && strides.size() == stages && sr_ratios.size() == stages,
           "{}: {} stages of channels but {} of block types, {} strides and {} sr ratios", m,
           stages, stage_types.size(), strides.size(), sr_ratios.size());
  for (size_t s = 0; s < stages; ++s) {
    NV_CHECK(!stage_channels[s].empty(), "{}: stage {} has no blocks", m, s + 1);
    NV_CHECK(stage_types[s].size() == stage_channels[s].size(),
             "{}: stage {} has {} channel entries but {} block types", m, s + 1,
             stage_channels[s].size(), stage_types[s].size());
    NV_CHECK(strides[s] == 1 || strides[s] == 2, "{}: stage {} stride must be 1 or 2, got {}", m,
             s + 1, strides[s]);
    NV_CHECK(sr_ratios[s] >= 1, "{}: stage {} sr ratio must be >= 1, got {}", m, s + 1,
             sr_ratios[s]);
    for (size_t b = 0; b < stage_channels[s].size(); ++b) {
      const int64_t out = stage_channels[s][b];
      NV_CHECK(out > 0 && out % head_dim == 0,
               "{}: stage {} block {} has {} channels, not a multiple of head_dim {}", m, s + 1, b,
               out, head_dim);
      if (stage_types[s][b] == BlockType::NTB) {
        const int64_t mh = ntb_mhsa_channels(out, mix_block_ratio, head_dim);
        NV_CHECK(mh < out,
                 "{}: stage {} block {} is an NTB with {} channels: its attention path takes "
                 "make_divisible({} * {}, {}) = {}, leaving no channels for its MHCA path",
                 m, s + 1, b, out, out, mix_block_ratio, head_dim, mh);
      }
    }
  }
}

void NextViTConfig::validate_input(int64_t height, int64_t width) const {
  NV_CHECK(height > 0 && width > 0, "{}: input size {}x{} must be positive", name, height, width);
  // Stem: two stride-2 3x3 convs with padding 1: each maps n to ceil(n / 2).
  int64_t h = (height + 1) / 2, w = (width + 1) / 2;
  h = (h + 1) / 2;
  w = (w + 1) / 2;
  for (size_t s = 0; s < stage_channels.size(); ++s) {
    if (strides[s] == 2) {  // AvgPool2d(2, 2, ceil_mode=True)
      h = (h + 1) / 2;
      w = (w + 1) / 2;
    }
    const int64_t window = sr_ratios[s] * sr_ratios[s];
    for (BlockType t : stage_types[s]) {
      if (t != BlockType::NTB || sr_ratios[s] == 1) continue;
      NV_CHECK(h * w >= window,
               "{}: input {}x{} is too small: stage {} has {}x{} = {} tokens, fewer than the "
               "sr^2 = {} its E-MHSA pools together (sr = {})",
               name, height, width, s + 1, h, w, h * w, window, sr_ratios[s]);
    }
  }
}

}  // namespace nextvit
