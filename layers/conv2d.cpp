#include "layers/conv2d.h"

namespace nextvit {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
               int64_t padding, int64_t groups, bool bias)
    : options_(ops::Conv2dOptions::make(stride, padding, groups)) {
  NV_CHECK(in_channels > 0 && out_channels > 0 && kernel > 0 && stride > 0 && groups > 0,
           "Conv2d({}, {}, kernel {}, stride {}, groups {}): sizes must be positive", in_channels,
           out_channels, kernel, stride, groups);
  NV_CHECK(in_channels % groups == 0 && out_channels % groups == 0,
           "Conv2d: {} groups must divide both {} input and {} output channels", groups,
           in_channels, out_channels);
  weight_ = register_parameter("weight",
                               Tensor::zeros({out_channels, in_channels / groups, kernel, kernel}));
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({out_channels}));
}

Variable Conv2d::forward(const Variable& x) const {
  return ops::conv2d(x, weight_, bias_, options_);
}

void Conv2d::ensure_bias() {
  if (!bias_.defined()) {
    bias_ = register_parameter("bias", Tensor::zeros({weight_.size(0)}).to(weight_.device()));
  }
}

void Conv2d::reset_parameters(Generator& generator) {
  init_weight_and_bias(weight_, bias_, generator);
}

}  // namespace nextvit
