#pragma once
// Gradient norm, clipping and the divergence check of the training loop.
#include <cstdint>
#include <vector>

#include "autograd/variable.h"

namespace nextvit {

// The L2 norm of all gradients together, sqrt(sum over parameters with a gradient of sum(g^2)).
// Parameters without a gradient count as zero. 0 when none has one.
float grad_norm(const std::vector<Variable>& params);

// torch.nn.utils.clip_grad_norm_ (L2, error_if_nonfinite=False): scales every gradient by
// min(1, max_norm / (norm + 1e-6)) and returns the norm measured before clipping. As in torch,
// a NaN norm turns the gradients to NaN and an infinite one to zero: call
// check_grad_norm_finite() on the result before stepping.
float clip_grad_norm(const std::vector<Variable>& params, float max_norm);

// clip_grad_norm without making the host wait: the norm, the coefficient and the scaling stay
// on the gradients' device (all gradients on one device), and the norm is returned there as a
// one-element tensor, to be read when the host reads anyway (the trainer's logging steps). The
// same arithmetic as clip_grad_norm, so the same gradients to the bit on one device.
Tensor clip_grad_norm_on_device(const std::vector<Variable>& params, float max_norm);

// Throws a nextvit::Error naming the step when the norm is NaN or infinite: the loss has
// diverged (or overflowed), and an update with such gradients would destroy the weights.
void check_grad_norm_finite(float norm, int64_t step);

}  // namespace nextvit
