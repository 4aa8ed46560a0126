#pragma once
// ConvBNReLU: the stem's unit, Conv3x3 (pad 1, no bias) -> BatchNorm -> ReLU, the last two fused.
#include <memory>

#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/conv_bn.h"

namespace nextvit {

class ConvBNReLU : public Module {
 public:
  ConvBNReLU(int64_t in_channels, int64_t out_channels, int64_t stride)
      : conv(register_module("conv",
                             std::make_shared<Conv2d>(in_channels, out_channels, 3, stride, 1))),
        norm(register_module("norm", std::make_shared<BatchNorm>(out_channels))) {}
  Variable forward(const Variable& x) {
    profiler::ModuleScope scope(profile_id());
    return conv_bn(*conv, *norm, x, /*relu=*/true);
  }

  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm> norm;
};

}  // namespace nextvit
