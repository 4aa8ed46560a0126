#pragma once
// NTB, Next Transformer Block, out channels split as m = make_divisible(out * r, head_dim) for
// the attention path and c = out - m for the convolution path:
//   x = PatchEmbed(in -> m, stride)(x)
//   x = x + DropPath_{r p}(E-MHSA(BN1(x)))     (on the flattened tokens of x)
//   y = PatchEmbed(m -> c, 1)(x);  y = y + DropPath_{(1-r) p}(MHCA(y))
//   x = concat(x, y) on channels                (out channels)
//   x = x + DropPath_p(Mlp(BN2(x)))             (Mlp ratio 2)
#include <memory>

#include "layers/block.h"
#include "layers/e_mhsa.h"
#include "layers/mhca.h"
#include "layers/mlp.h"
#include "layers/patch_embed.h"

namespace nextvit {

// What an NTB is built from (models/nextvit.cpp fills it in from the configuration).
struct NTBOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t stride = 1;      // of the first PatchEmbed
  int64_t sr_ratio = 1;    // E-MHSA's key/value average-pooling factor
  float drop_path = 0.0f;  // the block's rate; the two mixing paths share it by mix_block_ratio
  int64_t head_dim = 32;
  double mix_block_ratio = 0.75;  // the attention path's share of the output channels
  double mlp_ratio = 2.0;
};

class NTB : public Block {
 public:
  // `generator` draws the drop-path masks; owned by the model.
  NTB(const NTBOptions& options, Generator* generator);
  Variable forward(const Variable& x) override;
  // Whether forward runs E-MHSA on the image itself (EMHSA::forward_image: its linear layers as
  // 1x1 convolutions) rather than on tokens: in eval on the CPU.
  static bool attention_on_image(bool training, Device device) {
    return !training && device.is_cpu();
  }
  int64_t mhsa_channels() const { return mhsa_channels_; }
  int64_t mhca_channels() const { return mhca_channels_; }

  std::shared_ptr<PatchEmbed> patch_embed;
  std::shared_ptr<BatchNorm> norm1;
  std::shared_ptr<EMHSA> e_mhsa;
  std::shared_ptr<PatchEmbed> projection;
  std::shared_ptr<MHCA> mhca;
  std::shared_ptr<BatchNorm> norm2;
  std::shared_ptr<Mlp> mlp;

 private:
  int64_t mhsa_channels_, mhca_channels_;
  float drop_path_, mix_block_ratio_;
  Generator* generator_;
};

// The attention-path width m of an NTB with `out_channels` (the rest, out - m, is the conv path).
int64_t ntb_mhsa_channels(int64_t out_channels, double mix_block_ratio, int64_t head_dim);

}  // namespace nextvit
