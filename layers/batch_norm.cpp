#include "layers/batch_norm.h"

#include <cmath>

namespace nextvit {

BatchNorm::BatchNorm(int64_t channels, float eps, float momentum)
    : channels_(channels), eps_(eps), momentum_(momentum) {
  NV_CHECK(channels > 0, "BatchNorm({}): channel count must be positive", channels);
  weight_ = register_parameter("weight", Tensor::ones({channels}));
  bias_ = register_parameter("bias", Tensor::zeros({channels}));
  running_mean_ = Tensor::zeros({channels});
  running_var_ = Tensor::ones({channels});
  num_batches_tracked_ = Tensor::zeros({}, DType::I64);
  register_buffer("running_mean", &running_mean_);
  register_buffer("running_var", &running_var_);
  register_buffer("num_batches_tracked", &num_batches_tracked_);
}

void BatchNorm::begin_forward() {
  NV_CHECK(!(folded_ && is_training()),
           "BatchNorm: this layer was folded for deployment and cannot be trained");
  // A host-side counter (Module::to keeps integer buffers on the CPU).
  if (is_training()) num_batches_tracked_.data<int64_t>()[0] += 1;
}

Variable BatchNorm::forward(const Variable& x) {
  begin_forward();
  if (folded_) return x;
  return ops::batch_norm(x, weight_, bias_, running_mean_, running_var_, options());
}

Variable BatchNorm::forward_relu(const Variable& x) {
  begin_forward();
  if (folded_) return ops::relu(x);
  return ops::batch_norm_relu(x, weight_, bias_, running_mean_, running_var_, options());
}

std::pair<Tensor, Tensor> BatchNorm::affine() const {
  std::vector<float> g = weight_.data().to_vector(), b = bias_.data().to_vector();
  std::vector<float> m = running_mean_.to_vector(), v = running_var_.to_vector();
  std::vector<float> scale(channels_), shift(channels_);
  for (int64_t c = 0; c < channels_; ++c) {
    const double s = g[c] / std::sqrt(double(v[c]) + eps_);
    scale[c] = static_cast<float>(s);
    shift[c] = static_cast<float>(b[c] - m[c] * s);
  }
  return {Tensor::from_vector(scale, {channels_}), Tensor::from_vector(shift, {channels_})};
}

void BatchNorm::reset_parameters(Generator&) {
  weight_.data().fill_(1.0f);
  bias_.data().zero_();
}

}  // namespace nextvit
