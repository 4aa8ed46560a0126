#include "layers/linear.h"

namespace nextvit {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias) {
  NV_CHECK(in_features > 0 && out_features > 0, "Linear({}, {}): sizes must be positive",
           in_features, out_features);
  weight_ = register_parameter("weight", Tensor::zeros({out_features, in_features}));
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({out_features}));
}

void Linear::reset_parameters(Generator& generator) {
  init_weight_and_bias(weight_, bias_, generator);
}

}  // namespace nextvit
