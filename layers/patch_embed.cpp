#include "layers/patch_embed.h"

namespace nextvit {

PatchEmbed::PatchEmbed(int64_t in_channels, int64_t out_channels, int64_t stride)
    : stride_(stride) {
  NV_CHECK(stride == 1 || stride == 2, "PatchEmbed: stride must be 1 or 2, got {}", stride);
  if (stride == 2 || in_channels != out_channels) {
    conv = register_module("conv", std::make_shared<Conv2d>(in_channels, out_channels, 1));
    norm = register_module("norm", std::make_shared<BatchNorm>(out_channels));
  }
}

Variable PatchEmbed::forward(const Variable& x) {
  if (is_identity()) return x;
  profiler::ModuleScope scope(profile_id());
  Variable y = x;
  if (stride_ == 2) {
    ops::AvgPool2dOptions pool;
    pool.kernel = 2;
    pool.stride = 2;
    pool.ceil_mode = true;
    pool.count_include_pad = false;
    y = ops::avg_pool2d(y, pool);
  }
  return conv_bn(*conv, *norm, y, /*relu=*/false);
}

}  // namespace nextvit
