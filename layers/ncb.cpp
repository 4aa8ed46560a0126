#include "layers/ncb.h"

namespace nextvit {

NCB::NCB(const NCBOptions& o, Generator* generator)
    : drop_path_(o.drop_path), generator_(generator) {
  patch_embed = register_module(
      "patch_embed", std::make_shared<PatchEmbed>(o.in_channels, o.out_channels, o.stride));
  mhca = register_module("mhca", std::make_shared<MHCA>(o.out_channels, o.head_dim));
  norm = register_module("norm", std::make_shared<BatchNorm>(o.out_channels));
  mlp = register_module("mlp", std::make_shared<Mlp>(o.out_channels, o.mlp_ratio, o.head_dim));
}

Variable NCB::forward(const Variable& input) {
  profiler::ModuleScope scope(profile_id());
  Variable x = patch_embed->forward(input);
  if (is_training()) {
    x = ops::add(x, ops::drop_path(mhca->forward(x), drop_path_, true, *generator_));
    return ops::add(x,
                    ops::drop_path(mlp->forward(norm->forward(x)), drop_path_, true, *generator_));
  }
  // In eval drop_path is the identity, and each residual add runs in the output pass of its
  // branch's last convolution: x + branch(x) without a pass of its own. The pre-norm is
  // applied by the Mlp's first convolution as it reads x.
  x = mhca->forward(x, /*residual=*/x);
  return mlp->forward(x, /*residual=*/x, norm.get());
}

}  // namespace nextvit
