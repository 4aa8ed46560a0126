#pragma once
// Mlp: Conv1x1(C -> hidden, bias) -> ReLU -> Conv1x1(hidden -> C, bias), on NCHW maps.
// hidden = make_divisible(C * ratio, divisor) as in the official implementation.
#include <memory>

#include "layers/conv2d.h"
#include "layers/conv_bn.h"

namespace nextvit {

// The official _make_divisible(v, divisor): round to the nearest multiple of divisor (at least
// divisor), and add one more divisor if rounding went down by more than 10%.
int64_t make_divisible(double value, int64_t divisor);

class Mlp : public Module {
 public:
  Mlp(int64_t channels, double ratio, int64_t divisor);
  // mlp(x), or residual + mlp(x) when a residual is given (the block's add, run by conv2);
  // with a norm, mlp(norm(x)) (the block's pre-norm, applied by conv1 as it reads x).
  Variable forward(const Variable& x, const Variable& residual = Variable(),
                   BatchNorm* norm = nullptr) {
    profiler::ModuleScope scope(profile_id());
    const Variable hidden = norm ? bn_conv_relu(*norm, *conv1, x) : conv_relu(*conv1, x);
    return residual.defined() ? conv_add(*conv2, hidden, residual) : conv2->forward(hidden);
  }
  int64_t hidden() const { return conv1->weight().size(0); }

  std::shared_ptr<Conv2d> conv1, conv2;
};

}  // namespace nextvit
