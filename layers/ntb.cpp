#include "layers/ntb.h"

namespace nextvit {

int64_t ntb_mhsa_channels(int64_t out_channels, double mix_block_ratio, int64_t head_dim) {
  // int() first, as the official code does: make_divisible(int(out * r), divisor).
  return make_divisible(static_cast<double>(static_cast<int64_t>(out_channels * mix_block_ratio)),
                        head_dim);
}

NTB::NTB(const NTBOptions& o, Generator* generator)
    : drop_path_(o.drop_path),
      mix_block_ratio_(static_cast<float>(o.mix_block_ratio)),
      generator_(generator) {
  mhsa_channels_ = ntb_mhsa_channels(o.out_channels, o.mix_block_ratio, o.head_dim);
  mhca_channels_ = o.out_channels - mhsa_channels_;
  NV_CHECK(mhca_channels_ > 0,
           "NTB with {} output channels: the attention path takes m = make_divisible({} * {}, {}) "
           "= {} channels, leaving none for the convolution path; use a wider block",
           o.out_channels, o.out_channels, o.mix_block_ratio, o.head_dim, mhsa_channels_);
  patch_embed = register_module(
      "patch_embed", std::make_shared<PatchEmbed>(o.in_channels, mhsa_channels_, o.stride));
  norm1 = register_module("norm1", std::make_shared<BatchNorm>(mhsa_channels_));
  e_mhsa =
      register_module("e_mhsa", std::make_shared<EMHSA>(mhsa_channels_, o.head_dim, o.sr_ratio));
  projection = register_module("projection",
                               std::make_shared<PatchEmbed>(mhsa_channels_, mhca_channels_, 1));
  mhca = register_module("mhca", std::make_shared<MHCA>(mhca_channels_, o.head_dim));
  norm2 = register_module("norm2", std::make_shared<BatchNorm>(o.out_channels));
  mlp = register_module("mlp", std::make_shared<Mlp>(o.out_channels, o.mlp_ratio, o.head_dim));
}

Variable NTB::forward(const Variable& input) {
  profiler::ModuleScope scope(profile_id());
  const bool train = is_training();
  Variable x = patch_embed->forward(input);
  if (attention_on_image(train, x.device())) {
    // Inference on the CPU: the attention on the image itself (EMHSA::forward_image), without
    // the transposes to and from tokens, its residual add in the projection's output pass.
    x = e_mhsa->forward_image(norm1->forward(x), /*residual=*/x);
  } else {
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    // (B, C, H, W) -> tokens (B, HW, C), row-major over (H, W), as the official rearrange.
    Variable tokens = ops::transpose(ops::reshape(norm1->forward(x), {B, C, H * W}), 1, 2);
    Variable attn =
        ops::drop_path(e_mhsa->forward(tokens), drop_path_ * mix_block_ratio_, train, *generator_);
    x = ops::add(x, ops::reshape(ops::transpose(attn, 1, 2), {B, C, H, W}));
  }

  Variable y = projection->forward(x);
  if (train) {
    y = ops::add(y, ops::drop_path(mhca->forward(y), drop_path_ * (1.0f - mix_block_ratio_), true,
                                   *generator_));
    x = ops::concat({x, y}, 1);
    return ops::add(x,
                    ops::drop_path(mlp->forward(norm2->forward(x)), drop_path_, true, *generator_));
  }
  // In eval drop_path is the identity, and these two residual adds run in the output pass of
  // their branch's last convolution (as in NCB), norm2 in the Mlp's first convolution.
  y = mhca->forward(y, /*residual=*/y);
  x = ops::concat({x, y}, 1);
  return mlp->forward(x, /*residual=*/x, norm2.get());
}

}  // namespace nextvit
