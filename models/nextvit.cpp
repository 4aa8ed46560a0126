#include "models/nextvit.h"

#include "layers/ncb.h"
#include "layers/ntb.h"
#include "models/memory_estimate.h"

namespace nextvit {

namespace {

// Block b of stage s, taking `in` channels; `index` counts blocks over all stages (the
// drop-path rate grows linearly with it).
std::shared_ptr<Block> make_block(const NextViTConfig& c, size_t s, size_t b, int64_t in,
                                  int64_t index, Generator* g) {
  const int64_t stride = (b == 0) ? c.strides[s] : 1;
  if (c.stage_types[s][b] == BlockType::NCB) {
    NCBOptions o;
    o.in_channels = in;
    o.out_channels = c.stage_channels[s][b];
    o.stride = stride;
    o.drop_path = c.drop_path_rate(index);
    o.head_dim = c.head_dim;
    o.mlp_ratio = c.ncb_mlp_ratio;
    return std::make_shared<NCB>(o, g);
  }
  NTBOptions o;
  o.in_channels = in;
  o.out_channels = c.stage_channels[s][b];
  o.stride = stride;
  o.sr_ratio = c.sr_ratios[s];
  o.drop_path = c.drop_path_rate(index);
  o.head_dim = c.head_dim;
  o.mix_block_ratio = c.mix_block_ratio;
  o.mlp_ratio = c.ntb_mlp_ratio;
  return std::make_shared<NTB>(o, g);
}

}  // namespace

NextViT::NextViT(const NextViTConfig& config, uint64_t seed)
    : config_(config), drop_path_generator_(std::make_unique<Generator>(seed ^ 0xd809ull)) {
  config_.validate();
  // Refuse a model whose weights alone cannot fit before allocating any of them.
  check_memory_fits(config_, 0, 0, 0, false, "model");
  const auto& c = config_;
  stem = register_module("stem", std::make_shared<ModuleList<ConvBNReLU>>());
  stem->push_back(std::make_shared<ConvBNReLU>(c.in_channels, c.stem_channels[0], 2));
  stem->push_back(std::make_shared<ConvBNReLU>(c.stem_channels[0], c.stem_channels[1], 1));
  stem->push_back(std::make_shared<ConvBNReLU>(c.stem_channels[1], c.stem_channels[2], 1));
  stem->push_back(std::make_shared<ConvBNReLU>(c.stem_channels[2], c.stem_channels[2], 2));

  features = register_module("features", std::make_shared<ModuleList<Block>>());
  int64_t in = c.stem_channels[2], index = 0;
  Generator* g = drop_path_generator_.get();
  for (size_t s = 0; s < c.stage_channels.size(); ++s) {
    for (size_t b = 0; b < c.stage_channels[s].size(); ++b, ++index) {
      features->push_back(make_block(c, s, b, in, index, g));
      in = c.stage_channels[s][b];
    }
  }
  norm = register_module("norm", std::make_shared<BatchNorm>(in));
  proj_head = register_module("proj_head", std::make_shared<ModuleList<Linear>>());
  proj_head->push_back(std::make_shared<Linear>(in, c.num_classes));

  Generator init(seed);
  reset_parameters(init);
}

Variable NextViT::forward_features(const Variable& x) {
  NV_CHECK(x.dim() == 4 && x.size(1) == config_.in_channels,
           "{}: expected input (N, {}, H, W), got {}", config_.name, config_.in_channels,
           shape_str(x.shape()));
  config_.validate_input(x.size(2), x.size(3));
  Variable y = x;
  for (const auto& layer : *stem) y = layer->forward(y);
  for (const auto& block : *features) y = block->forward(y);
  profiler::ModuleScope scope(head_profile_id());
  return ops::global_avg_pool(norm->forward(y));
}

Variable NextViT::forward(const Variable& x) {
  Variable features = forward_features(x);
  profiler::ModuleScope scope(head_profile_id());
  return (*proj_head)[0].forward(features);
}

int NextViT::head_profile_id() const {
  // The final norm, pooling and classifier are one row of a profile, "head".
  if (norm->profile_id() < 0 || !profiler::enabled()) return -1;
  static const int id = profiler::intern("head");
  return id;
}

}  // namespace nextvit
