#include "layers/mhca.h"

namespace nextvit {

MHCA::MHCA(int64_t channels, int64_t head_dim) {
  NV_CHECK(head_dim > 0 && channels > 0 && channels % head_dim == 0,
           "MHCA: {} channels are not a whole number of heads of head_dim {}", channels, head_dim);
  group_conv3x3 = register_module(
      "group_conv3x3", std::make_shared<Conv2d>(channels, channels, 3, 1, 1, channels / head_dim));
  norm = register_module("norm", std::make_shared<BatchNorm>(channels));
  projection = register_module("projection", std::make_shared<Conv2d>(channels, channels, 1));
}

}  // namespace nextvit
