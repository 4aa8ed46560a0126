#include "models/nextvit_info.h"

#include "core/checked.h"
#include "layers/ncb.h"
#include "layers/ntb.h"

namespace nextvit {
namespace {

using profiler::OpKind;

// Appends counted products to ModelInfo::parts and sums them for the stage being counted.
struct Counter {
  std::vector<PartMacs>& parts;
  int64_t total = 0;

  void add(const std::string& path, OpKind kind, int64_t macs) {
    parts.push_back({path, kind, macs});
    total = checked_add(total, macs, "MAC count");
  }
  // A conv producing (out, h, w): every output element sums in/groups * k * k products.
  void conv(const std::string& path, const Conv2d& conv, int64_t h, int64_t w) {
    const Shape& s = conv.weight().shape();  // (out, in/groups, k, k)
    int64_t macs = h * w;
    for (int64_t d : s) macs = checked_mul(macs, d, "MAC count");
    add(path, profiler::conv_kind(conv.options().groups, s[2], s[3]), macs);
  }
  void linear(const std::string& path, const Linear& l, int64_t tokens) {
    add(path, OpKind::Gemm,
        checked_mul(checked_mul(l.weight().size(0), l.weight().size(1), "MAC count"), tokens,
                    "MAC count"));
  }
};

int64_t half_up(int64_t n) {
  return (n + 1) / 2;
}

void mhca_macs(Counter& c, const std::string& path, const MHCA& m, int64_t h, int64_t w) {
  c.conv(path, *m.group_conv3x3, h, w);
  c.conv(path, *m.projection, h, w);
}

void mlp_macs(Counter& c, const std::string& path, const Mlp& m, int64_t h, int64_t w) {
  c.conv(path, *m.conv1, h, w);
  c.conv(path, *m.conv2, h, w);
}

// Applies a block's PatchEmbed to (h, w) and counts its conv at the new size.
void patch_embed_macs(Counter& c, const std::string& path, const PatchEmbed& p, int64_t& h,
                      int64_t& w) {
  if (p.stride() == 2) {
    h = half_up(h);
    w = half_up(w);
  }
  if (!p.is_identity()) c.conv(path, *p.conv, h, w);
}

void block_macs(Counter& c, const std::string& path, Block& block, int64_t& h, int64_t& w) {
  if (auto* ncb = dynamic_cast<NCB*>(&block)) {
    patch_embed_macs(c, path + ".patch_embed", *ncb->patch_embed, h, w);
    mhca_macs(c, path + ".mhca", *ncb->mhca, h, w);
    mlp_macs(c, path + ".mlp", *ncb->mlp, h, w);
    return;
  }
  auto& ntb = dynamic_cast<NTB&>(block);
  patch_embed_macs(c, path + ".patch_embed", *ntb.patch_embed, h, w);
  const EMHSA& a = *ntb.e_mhsa;
  const std::string attn = path + ".e_mhsa";
  const int64_t n = h * w, window = a.sr_ratio() * a.sr_ratio();
  const int64_t nk = a.sr_ratio() > 1 ? n / window : n;
  c.linear(attn, *a.q, n);
  c.linear(attn, *a.k, nk);
  c.linear(attn, *a.v, nk);
  c.linear(attn, *a.proj, n);
  // q k^T and attn v over all heads: N * N' * d * heads each
  c.add(attn, OpKind::Attention,
        checked_mul(checked_mul(2 * n, nk, "MAC count"), ntb.mhsa_channels(), "MAC count"));
  int64_t ph = h, pw = w;
  patch_embed_macs(c, path + ".projection", *ntb.projection, ph, pw);
  mhca_macs(c, path + ".mhca", *ntb.mhca, h, w);
  mlp_macs(c, path + ".mlp", *ntb.mlp, h, w);
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
  Counter stem_macs{info.parts};
  int64_t h = height, w = width;
  for (size_t i = 0; i < model.stem->size(); ++i) {
    const ConvBNReLU& layer = (*model.stem)[i];
    if (layer.conv->options().stride_h == 2) {
      h = half_up(h);
      w = half_up(w);
    }
    stem_macs.conv("stem." + std::to_string(i), *layer.conv, h, w);
    stem.params += count_params(layer);
  }
  stem.macs = stem_macs.total;
  stem.channels = c.stem_channels[2];
  stem.height = h;
  stem.width = w;
  info.stages.push_back(stem);

  size_t block = 0;
  for (size_t s = 0; s < c.stage_channels.size(); ++s) {
    StageInfo st{"stage" + std::to_string(s + 1)};
    Counter macs{info.parts};
    for (size_t b = 0; b < c.stage_channels[s].size(); ++b, ++block) {
      Block& blk = (*model.features)[block];
      block_macs(macs, "features." + std::to_string(block), blk, h, w);
      st.params += count_params(blk);
    }
    st.macs = macs.total;
    st.channels = c.stage_channels[s].back();
    st.height = h;
    st.width = w;
    info.stages.push_back(st);
  }

  StageInfo head{"head"};
  head.params = count_params(*model.norm) + count_params(*model.proj_head);
  Counter head_macs{info.parts};
  head_macs.linear("head", (*model.proj_head)[0], 1);
  head.macs = head_macs.total;
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
