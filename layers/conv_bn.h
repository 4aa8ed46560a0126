#pragma once
// A convolution and what follows it in the model (a BatchNorm, a ReLU, a residual add), run as
// one op in eval mode: ops::conv2d_eval_fused applies the BatchNorm's map, the ReLU and the add
// in the convolution's output pass on the CPU when no gradient is recorded. In training the
// layers run one after the other as always (the BatchNorm needs the batch statistics of the
// whole output).
#include "layers/batch_norm.h"
#include "layers/conv2d.h"

namespace nextvit {

// bn(conv(x)), or relu(bn(conv(x))) when relu. A folded bn (models/deploy.h) is the identity.
Variable conv_bn(const Conv2d& conv, BatchNorm& bn, const Variable& x, bool relu);
// relu(conv(x)).
Variable conv_relu(const Conv2d& conv, const Variable& x);
// residual + conv(x): a block's residual connection, in eval mode added in the convolution's
// output pass (no pass of its own over a new tensor).
Variable conv_add(const Conv2d& conv, const Variable& x, const Variable& residual);
// relu(conv(bn(x))): a block's pre-norm feeding its Mlp's first 1x1 convolution, in eval mode
// applied by the convolution as it reads x (no normalised tensor). A folded bn is the identity.
Variable bn_conv_relu(BatchNorm& bn, const Conv2d& conv, const Variable& x);

}  // namespace nextvit
