#pragma once
// Tensor functions that record nothing on the tape: in-place updates of lists of tensors for the
// optimizers, gradient clipping, the model EMA and gradient averaging (train/). Declared once
// here, implemented in autograd/ops/tensor_ops.cpp, dispatched to kernels/cpu or kernels/cuda by
// the tensors' device like every op, so train/ never handles raw pointers.
//
// Each list holds defined, contiguous f32 tensors, all on one device; the lists of one call
// have equal lengths and tensor k of each has the same number of elements (else a
// nextvit::Error naming the function and the entry). On CUDA a call is one kernel launch for the
// whole list (multi-tensor apply, kernels/optim.h) and makes the host wait for nothing; on the
// CPU it loops over the tensors. An empty list does nothing.
#include <vector>

#include "core/tensor.h"
#include "kernels/optim.h"

namespace nextvit::ops {

using TensorList = std::vector<Tensor>;

// SGD (kernels::SgdHyper) on every params[k] with grads[k], momentum_buffers[k] and hyper[k].
// momentum_buffers is empty when the momentum is 0.
void sgd_step_(const TensorList& params, const TensorList& grads,
               const TensorList& momentum_buffers, const std::vector<kernels::SgdHyper>& hyper);
// AdamW (kernels::AdamWHyper) on every params[k] with its moments and hyper[k].
void adamw_step_(const TensorList& params, const TensorList& grads, const TensorList& exp_avgs,
                 const TensorList& exp_avg_sqs, const std::vector<kernels::AdamWHyper>& hyper);
// ema[k] = decay * ema[k] + one_minus_decay * values[k].
void ema_update_(const TensorList& ema, const TensorList& values, float decay,
                 float one_minus_decay);
// sqrt(sum over the tensors of sum x^2) as a () f32 tensor on their device: the squares summed
// in double in a fixed order (the same bits on every run). The list must not be empty.
Tensor global_norm(const TensorList& xs);
// torch.nn.utils.clip_grad_norm_ without a read-back: the norm as global_norm, then every x
// scaled in place by max_norm / (norm + 1e-6) when that is below 1 or NaN. Returns the norm
// measured before scaling, on the tensors' device. max_norm > 0; the list must not be empty.
Tensor clip_norm_(const TensorList& xs, float max_norm);
// x *= s, in place (x contiguous f32).
void scale_(const Tensor& x, float s);

}  // namespace nextvit::ops
