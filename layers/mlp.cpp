#include "layers/mlp.h"

#include <algorithm>

namespace nextvit {

int64_t make_divisible(double value, int64_t divisor) {
  int64_t v =
      std::max<int64_t>(divisor, static_cast<int64_t>(value + divisor / 2.0) / divisor * divisor);
  if (v < 0.9 * value) v += divisor;
  return v;
}

Mlp::Mlp(int64_t channels, double ratio, int64_t divisor) {
  const int64_t hidden = make_divisible(channels * ratio, divisor);
  conv1 = register_module("conv1", std::make_shared<Conv2d>(channels, hidden, 1, 1, 0, 1, true));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(hidden, channels, 1, 1, 0, 1, true));
}

}  // namespace nextvit
