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

class NCB : public Block {
 public:
  NCB(int64_t in_channels, int64_t out_channels, int64_t stride, float drop_path, int64_t head_dim,
      double mlp_ratio, Generator* generator);
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
