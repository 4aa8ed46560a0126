#include "layers/linear.h"

namespace nextvit {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias) {
  NV_CHECK(in_features > 0 && out_features > 0, "Linear({}, {}): sizes must be positive",
           in_features, out_features);
  weight_ = register_parameter("weight", Tensor::zeros({out_features, in_features}));
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({out_features}));
}

void Linear::reset_parameters(Generator& generator) {
  Tensor w = Tensor::empty(weight_.shape());
  fill_trunc_normal(w, generator, 0.02f);
  weight_.set_data(w.to(weight_.device()));
  if (bias_.defined()) bias_.data().zero_();
}

}  // namespace nextvit
