#include "models/nextvit_info.h"

#include "core/checked.h"
#include "layers/ncb.h"
#include "layers/ntb.h"

namespace nextvit {
namespace {

// MACs of a conv producing (out, h, w): every output element sums in/groups * k * k products.
int64_t conv_macs(const Conv2d& conv, int64_t h, int64_t w) {
  const Shape& s = conv.weight().shape();  // (out, in/groups, k, k)
  int64_t macs = h * w;
  for (int64_t d : s) macs = checked_mul(macs, d, "MAC count");
  return macs;
}

int64_t half_up(int64_t n) {
  return (n + 1) / 2;
}

int64_t mhca_macs(const MHCA& m, int64_t h, int64_t w) {
  return checked_add(conv_macs(*m.group_conv3x3, h, w), conv_macs(*m.projection, h, w),
                     "MAC count");
}

int64_t mlp_macs(const Mlp& m, int64_t h, int64_t w) {
  return checked_add(conv_macs(*m.conv1, h, w), conv_macs(*m.conv2, h, w), "MAC count");
}

int64_t linear_macs(const Linear& l, int64_t tokens) {
  return checked_mul(checked_mul(l.weight().size(0), l.weight().size(1), "MAC count"), tokens,
                     "MAC count");
}

// Applies a block's PatchEmbed to (h, w) and returns its MACs at the new size.
int64_t patch_embed_macs(const PatchEmbed& p, int64_t& h, int64_t& w) {
  if (p.stride() == 2) {
    h = half_up(h);
    w = half_up(w);
  }
  return p.is_identity() ? 0 : conv_macs(*p.conv, h, w);
}

int64_t block_macs(Block& block, int64_t& h, int64_t& w) {
  if (auto* ncb = dynamic_cast<NCB*>(&block)) {
    int64_t macs = patch_embed_macs(*ncb->patch_embed, h, w);
    return checked_add(checked_add(macs, mhca_macs(*ncb->mhca, h, w), "MAC count"),
                       mlp_macs(*ncb->mlp, h, w), "MAC count");
  }
  auto& ntb = dynamic_cast<NTB&>(block);
  int64_t macs = patch_embed_macs(*ntb.patch_embed, h, w);
  const EMHSA& a = *ntb.e_mhsa;
  const int64_t n = h * w, window = a.sr_ratio() * a.sr_ratio();
  const int64_t nk = a.sr_ratio() > 1 ? n / window : n;
  const int64_t dim = ntb.mhsa_channels();
  for (int64_t m :
       {linear_macs(*a.q, n), linear_macs(*a.k, nk), linear_macs(*a.v, nk), linear_macs(*a.proj, n),
        // q k^T and attn v over all heads: N * N' * d * heads each
        checked_mul(checked_mul(2 * n, nk, "MAC count"), dim, "MAC count")}) {
    macs = checked_add(macs, m, "MAC count");
  }
  int64_t ph = h, pw = w;
  for (int64_t m : {patch_embed_macs(*ntb.projection, ph, pw), mhca_macs(*ntb.mhca, h, w),
                    mlp_macs(*ntb.mlp, h, w)}) {
    macs = checked_add(macs, m, "MAC count");
  }
  return macs;
}

int64_t count_params(const Module& m) {
  return m.parameter_count();
}

}  // namespace

ModelInfo analyze(const NextViT& model, int64_t height, int64_t width) {
  const NextViTConfig& c = model.config();
  c.validate_input(height, width);
  ModelInfo info;
  info.model = c.name;
  info.image_height = height;
  info.image_width = width;

  StageInfo stem{"stem"};
  int64_t h = height, w = width;
  for (const auto& layer : *model.stem) {
    if (layer->conv->options().stride_h == 2) {
      h = half_up(h);
      w = half_up(w);
    }
    stem.macs = checked_add(stem.macs, conv_macs(*layer->conv, h, w), "MAC count");
    stem.params += count_params(*layer);
  }
  stem.channels = c.stem_channels[2];
  stem.height = h;
  stem.width = w;
  info.stages.push_back(stem);

  size_t block = 0;
  for (size_t s = 0; s < c.stage_channels.size(); ++s) {
    StageInfo st{"stage" + std::to_string(s + 1)};
    for (size_t b = 0; b < c.stage_channels[s].size(); ++b, ++block) {
      Block& blk = (*model.features)[block];
      st.macs = checked_add(st.macs, block_macs(blk, h, w), "MAC count");
      st.params += count_params(blk);
    }
    st.channels = c.stage_channels[s].back();
    st.height = h;
    st.width = w;
    info.stages.push_back(st);
  }

  StageInfo head{"head"};
  head.params = count_params(*model.norm) + count_params(*model.proj_head);
  head.macs = linear_macs((*model.proj_head)[0], 1);
  head.channels = c.num_classes;
  head.height = head.width = 1;
  info.stages.push_back(head);

  for (const StageInfo& s : info.stages) {
    info.params = checked_add(info.params, s.params, "parameter count");
    info.macs = checked_add(info.macs, s.macs, "MAC count");
  }
  return info;
}

}  // namespace nextvit
