#pragma once
// Shared by ops::batch_norm (batch_norm.cpp) and ops::batch_norm_relu (batch_norm_relu.cpp): the
// two differ only in whether the kernels apply and undo a ReLU, so one function checks the
// inputs, runs the forward and records the backward for both.
#include "autograd/ops.h"

namespace nextvit::ops::detail {

// `op` names the caller in error messages and on the tape.
Variable batch_norm_impl(const Variable& x, const Variable& weight, const Variable& bias,
                         const Tensor& running_mean, const Tensor& running_var,
                         const BatchNormOptions& options, bool relu, const char* op);

// The training forward when options.sum_across_processes is set (sync_batch_norm.cpp), called
// by batch_norm_impl after its checks; tw and tb are the affine parameters' tensors (or
// undefined).
Variable sync_batch_norm_train(const Variable& x, const Variable& weight, const Variable& bias,
                               const Tensor& tw, const Tensor& tb, const Tensor& running_mean,
                               const Tensor& running_var, const BatchNormOptions& options,
                               bool relu, const char* op);

}  // namespace nextvit::ops::detail
