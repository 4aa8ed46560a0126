#pragma once
// AdamW, torch.optim.AdamW's default algorithm (amsgrad off): decoupled weight decay
// p *= 1 - lr * wd, then the Adam step with bias-corrected moments,
// p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps) -- eps outside the sqrt.
// t counts the steps in which this parameter had a gradient. State per parameter:
// "adamw.<name>.exp_avg", "adamw.<name>.exp_avg_sq" (f32, like the parameter) and
// "adamw.<name>.step" (i64 scalar).
#include "train/optim/optimizer.h"

namespace nextvit {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options = {});
  const AdamWOptions& options() const { return options_; }

 protected:
  std::vector<StateSpec> state_spec() const override;
  void update(const std::vector<ParamUpdate>& updates) override;

 private:
  AdamWOptions options_;
};

}  // namespace nextvit
