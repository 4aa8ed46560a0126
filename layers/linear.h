#pragma once
// Linear: y = x W^T + b over the last dimension; weight (out, in), bias (out).
#include "autograd/ops.h"
#include "layers/module.h"

namespace nextvit {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Variable forward(const Variable& x) const { return ops::linear(x, weight_, bias_); }
  void reset_parameters(Generator& generator) override;

  const Variable& weight() const { return weight_; }
  const Variable& bias() const { return bias_; }

 private:
  Variable weight_, bias_;
};

}  // namespace nextvit
