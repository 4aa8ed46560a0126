#pragma once
// NCB, Next Convolution Block:
//   x = PatchEmbed(x)
//   x = x + DropPath(MHCA(x))
//   x = x + DropPath(Mlp(BN(x)))         (Mlp ratio 3)
#include <memory>

#include "layers/block.h"
#include "layers/mhca.h"
#include "layers/mlp.h"
#include "layers/patch_embed.h"

namespace nextvit {

// What an NCB is built from (models/nextvit.cpp fills it in from the configuration).
struct NCBOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t stride = 1;      // of the PatchEmbed: 2 at the first block of a downsampling stage
  float drop_path = 0.0f;  // the block's stochastic-depth rate
  int64_t head_dim = 32;   // MHCA's group width, also the Mlp's rounding divisor
  double mlp_ratio = 3.0;
};

class NCB : public Block {
 public:
  // `generator` draws the drop-path masks; owned by the model.
  NCB(const NCBOptions& options, Generator* generator);
  Variable forward(const Variable& x) override;

  std::shared_ptr<PatchEmbed> patch_embed;
  std::shared_ptr<MHCA> mhca;
  std::shared_ptr<BatchNorm> norm;
  std::shared_ptr<Mlp> mlp;

 private:
  float drop_path_;
  Generator* generator_;  // drop-path masks; owned by the model
};

}  // namespace nextvit
