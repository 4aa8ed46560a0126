#include "models/nextvit_config.h"

#include <cmath>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/json_input.h"
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
  NV_CHECK(std::ifstream(name).good(),
           "unknown model '{}': expected nextvit_small, nextvit_base, nextvit_large, "
           "nextvit_fmnist or the path of a JSON configuration",
           name);
  // read_json_file refuses deep nesting and trailing garbage; from_json names this file.
  NextViTConfig c = from_json(read_json_file(name), name);
  if (c.name == "custom") c.name = name;
  return c;
}

namespace {

// Every key a configuration may hold: anything else is a typo that would otherwise be ignored
// silently ("num_clases": 10 training a 1000-class head).
const std::set<std::string> kConfigKeys = {
    "name",          "in_channels", "stem_chs",   "stage_out_channels", "stage_block_types",
    "strides",       "sr_ratios",   "head_dim",   "mix_block_ratio",    "ncb_mlp_ratio",
    "ntb_mlp_ratio", "drop_path",   "num_classes"};

BlockType parse_block_type(const nlohmann::json& v, const std::string& what) {
  NV_CHECK(v.is_string() && (v == "NCB" || v == "NTB"), "{}: block type {} is neither NCB nor NTB",
           what, v.is_string() ? "'" + v.get<std::string>() + "'" : v.dump());
  return v == "NCB" ? BlockType::NCB : BlockType::NTB;
}

const nlohmann::json& json_array(const nlohmann::json& v, const std::string& what, size_t min,
                                 size_t max) {
  NV_CHECK(v.is_array() && v.size() >= min && v.size() <= max,
           "{} must be a list of {} to {} entries, got {}", what, min, max,
           v.is_array() ? fmt::format("{} entries", v.size()) : v.dump());
  return v;
}

std::vector<int64_t> int_list(const nlohmann::json& v, const std::string& what, size_t min,
                              size_t max, int64_t lo, int64_t hi) {
  std::vector<int64_t> out;
  for (const auto& x : json_array(v, what, min, max)) {
    out.push_back(json_to_int(x, fmt::format("{}[{}]", what, out.size()), lo, hi));
  }
  return out;
}

}  // namespace

NextViTConfig NextViTConfig::from_json(const nlohmann::json& j, const std::string& source) {
  NextViTConfig c;
  const std::string where = "model configuration " + source;
  NV_CHECK(j.is_object(), "{}: expected a JSON object, got {}", where, j.type_name());
  for (const auto& item : j.items()) {
    NV_CHECK(kConfigKeys.count(item.key()), "{}: unknown key \"{}\"", where, item.key());
  }
  auto key = [&](const char* k) { return fmt::format("{}: \"{}\"", where, k); };
  for (const char* required : {"stage_out_channels", "stage_block_types"}) {
    NV_CHECK(j.contains(required), "{}: \"{}\" is missing", where, required);
  }
  if (j.contains("name")) {
    NV_CHECK(j["name"].is_string(), "{} must be a string", key("name"));
    c.name = j["name"].get<std::string>();
  }
  if (j.contains("in_channels")) {
    c.in_channels = json_to_int(j["in_channels"], key("in_channels"), 1, kMaxChannels);
  }
  if (j.contains("stem_chs")) {
    std::vector<int64_t> stem = int_list(j["stem_chs"], key("stem_chs"), 3, 3, 1, kMaxChannels);
    std::copy(stem.begin(), stem.end(), c.stem_channels.begin());
  }
  c.stage_channels.clear();
  const auto& stages =
      json_array(j["stage_out_channels"], key("stage_out_channels"), 1, kMaxStages);
  for (size_t s = 0; s < stages.size(); ++s) {
    c.stage_channels.push_back(int_list(stages[s],
                                        fmt::format("{}[{}]", key("stage_out_channels"), s), 1,
                                        kMaxBlocksPerStage, 1, kMaxChannels));
  }
  const auto& types = json_array(j["stage_block_types"], key("stage_block_types"), 1, kMaxStages);
  for (size_t s = 0; s < types.size(); ++s) {
    const std::string what = fmt::format("{}[{}]", key("stage_block_types"), s);
    c.stage_types.emplace_back();
    for (const auto& t : json_array(types[s], what, 1, kMaxBlocksPerStage)) {
      c.stage_types.back().push_back(
          parse_block_type(t, fmt::format("{}[{}]", what, c.stage_types.back().size())));
    }
  }
  if (j.contains("strides"))
    c.strides = int_list(j["strides"], key("strides"), 1, kMaxStages, 1, 2);
  if (j.contains("sr_ratios")) {
    c.sr_ratios = int_list(j["sr_ratios"], key("sr_ratios"), 1, kMaxStages, 1, kMaxSrRatio);
  }
  if (j.contains("head_dim"))
    c.head_dim = json_to_int(j["head_dim"], key("head_dim"), 1, kMaxChannels);
  // Ratios: finite and in range before any float-to-int conversion can see them.
  if (j.contains("mix_block_ratio")) {
    c.mix_block_ratio = json_to_number(j["mix_block_ratio"], key("mix_block_ratio"), 0.0, 1.0);
  }
  if (j.contains("ncb_mlp_ratio")) {
    c.ncb_mlp_ratio = json_to_number(j["ncb_mlp_ratio"], key("ncb_mlp_ratio"), 0.0, kMaxMlpRatio);
    NV_CHECK(c.ncb_mlp_ratio > 0, "{} must be positive, got 0", key("ncb_mlp_ratio"));
  }
  if (j.contains("ntb_mlp_ratio")) {
    c.ntb_mlp_ratio = json_to_number(j["ntb_mlp_ratio"], key("ntb_mlp_ratio"), 0.0, kMaxMlpRatio);
    NV_CHECK(c.ntb_mlp_ratio > 0, "{} must be positive, got 0", key("ntb_mlp_ratio"));
  }
  if (j.contains("drop_path")) {
    c.drop_path = static_cast<float>(json_to_number(j["drop_path"], key("drop_path"), 0.0, 1.0));
  }
  if (j.contains("num_classes")) {
    c.num_classes = json_to_int(j["num_classes"], key("num_classes"), 1, kMaxClasses);
  }
  try {
    c.validate();
  } catch (const Error& e) {
    NV_FAIL("{}: {}", where, e.what());
  }
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
  // Upper bounds too: a size that passes here is multiplied into parameter counts, MACs and
  // allocation sizes, which must not overflow.
  auto in_range = [](int64_t v, int64_t hi) { return v > 0 && v <= hi; };
  NV_CHECK(in_range(in_channels, kMaxChannels), "{}: in_channels must be in [1, {}], got {}", m,
           kMaxChannels, in_channels);
  for (int64_t s : stem_channels) {
    NV_CHECK(in_range(s, kMaxChannels), "{}: stem channels must be in [1, {}], got {}", m,
             kMaxChannels, s);
  }
  NV_CHECK(in_range(num_classes, kMaxClasses), "{}: num_classes must be in [1, {}], got {}", m,
           kMaxClasses, num_classes);
  NV_CHECK(in_range(head_dim, kMaxChannels), "{}: head_dim must be in [1, {}], got {}", m,
           kMaxChannels, head_dim);
  NV_CHECK(drop_path >= 0.0f && drop_path < 1.0f, "{}: drop_path must be in [0, 1), got {}", m,
           drop_path);
  NV_CHECK(mix_block_ratio > 0 && mix_block_ratio < 1,
           "{}: mix_block_ratio must be in (0, 1), got {}", m, mix_block_ratio);
  for (double r : {ncb_mlp_ratio, ntb_mlp_ratio}) {
    NV_CHECK(std::isfinite(r) && r > 0 && r <= kMaxMlpRatio,
             "{}: MLP ratios must be in (0, {}], got {}", m, kMaxMlpRatio, r);
  }
  const size_t stages = stage_channels.size();
  NV_CHECK(stages > 0 && stages <= size_t(kMaxStages), "{}: {} stages, expected 1 to {}", m, stages,
           kMaxStages);
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
    NV_CHECK(sr_ratios[s] >= 1 && sr_ratios[s] <= kMaxSrRatio,
             "{}: stage {} sr ratio must be in [1, {}], got {}", m, s + 1, kMaxSrRatio,
             sr_ratios[s]);
    NV_CHECK(stage_channels[s].size() <= size_t(kMaxBlocksPerStage),
             "{}: stage {} has {} blocks, more than {}", m, s + 1, stage_channels[s].size(),
             kMaxBlocksPerStage);
    for (size_t b = 0; b < stage_channels[s].size(); ++b) {
      const int64_t out = stage_channels[s][b];
      NV_CHECK(in_range(out, kMaxChannels),
               "{}: stage {} block {} has {} channels, expected 1 to {}", m, s + 1, b, out,
               kMaxChannels);
      NV_CHECK(out % head_dim == 0,
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
  NV_CHECK(height <= kMaxImageSide && width <= kMaxImageSide,
           "{}: input size {}x{} is larger than {} on a side", name, height, width, kMaxImageSide);
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
