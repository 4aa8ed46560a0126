#pragma once
// SGD with momentum, torch.optim.SGD's algorithm: weight decay added to the gradient
// (d = g + wd * p, L2 regularisation, not decoupled), a momentum buffer started from the first
// gradient (buf = d) and then buf = momentum * buf + (1 - dampening) * d, the Nesterov variant
// d + momentum * buf on request, and p -= lr * d. State per parameter: "sgd.<name>.momentum_buffer"
// (none when momentum is 0).
#include "train/optim/optimizer.h"

namespace nextvit {

struct SgdOptions {
  double lr = 0.1;
  double momentum = 0.9;
  double dampening = 0.0;
  bool nesterov = false;
};

class Sgd : public Optimizer {
 public:
  Sgd(std::vector<ParamGroup> groups, const SgdOptions& options = {});
  const SgdOptions& options() const { return options_; }

 protected:
  std::vector<StateSpec> state_spec() const override;
  void update(const std::vector<ParamUpdate>& updates) override;

 private:
  SgdOptions options_;
};

}  // namespace nextvit
