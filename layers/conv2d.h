#pragma once
// Conv2d: weight (out, in/groups, k, k), optional bias (out).
#include "autograd/ops.h"
#include "layers/module.h"

namespace nextvit {

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1,
         int64_t padding = 0, int64_t groups = 1, bool bias = false);
  Variable forward(const Variable& x) const;
  void reset_parameters(Generator& generator) override;

  const Variable& weight() const { return weight_; }
  const Variable& bias() const { return bias_; }  // undefined when built without bias
  const ops::Conv2dOptions& options() const { return options_; }
  // Adds a zero bias if the layer has none (BatchNorm folding needs one).
  void ensure_bias();

 private:
  Variable weight_, bias_;
  ops::Conv2dOptions options_;
};

}  // namespace nextvit
