#pragma once
// A convolution and what follows it in the model (a BatchNorm, a ReLU), run as one op in eval
// mode: ops::conv2d_eval_fused applies the BatchNorm's map and the ReLU in the convolution's
// output pass on the CPU when no gradient is recorded. In training the layers run one after
// the other as always (the BatchNorm needs the batch statistics of the whole output).
#include "layers/batch_norm.h"
#include "layers/conv2d.h"

namespace nextvit {

// bn(conv(x)), or relu(bn(conv(x))) when relu. A folded bn (models/deploy.h) is the identity.
Variable conv_bn(const Conv2d& conv, BatchNorm& bn, const Variable& x, bool relu);
// relu(conv(x)).
Variable conv_relu(const Conv2d& conv, const Variable& x);

}  // namespace nextvit
