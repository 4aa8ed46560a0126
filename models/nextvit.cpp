#include "models/nextvit.h"

#include "layers/ncb.h"
#include "layers/ntb.h"
#include "models/memory_estimate.h"

namespace nextvit {

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
      const int64_t out = c.stage_channels[s][b];
      const int64_t stride = (b == 0) ? c.strides[s] : 1;
      const float dp = c.drop_path_rate(index);
      if (c.stage_types[s][b] == BlockType::NCB) {
        features->push_back(
            std::make_shared<NCB>(in, out, stride, dp, c.head_dim, c.ncb_mlp_ratio, g));
      } else {
        features->push_back(std::make_shared<NTB>(in, out, stride, c.sr_ratios[s], dp, c.head_dim,
                                                  c.mix_block_ratio, c.ntb_mlp_ratio, g));
      }
      in = out;
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
