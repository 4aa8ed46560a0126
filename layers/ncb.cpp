#include "layers/ncb.h"

namespace nextvit {

NCB::NCB(int64_t in_channels, int64_t out_channels, int64_t stride, float drop_path,
         int64_t head_dim, double mlp_ratio, Generator* generator)
    : drop_path_(drop_path), generator_(generator) {
  patch_embed = register_module("patch_embed",
                                std::make_shared<PatchEmbed>(in_channels, out_channels, stride));
  mhca = register_module("mhca", std::make_shared<MHCA>(out_channels, head_dim));
  norm = register_module("norm", std::make_shared<BatchNorm>(out_channels));
  mlp = register_module("mlp", std::make_shared<Mlp>(out_channels, mlp_ratio, head_dim));
}

Variable NCB::forward(const Variable& input) {
  profiler::ModuleScope scope(profile_id());
  const bool train = is_training();
  Variable x = patch_embed->forward(input);
  x = ops::add(x, ops::drop_path(mhca->forward(x), drop_path_, train, *generator_));
  x = ops::add(x, ops::drop_path(mlp->forward(norm->forward(x)), drop_path_, train, *generator_));
  return x;
}

}  // namespace nextvit
