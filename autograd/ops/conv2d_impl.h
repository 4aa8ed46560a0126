#pragma once
// Shared by ops::conv2d (conv2d.cpp) and the eval-mode fused convolution (conv2d_fused.cpp):
// the input checks, the kernel shape, and the profiler's classification.
#include "autograd/ops.h"
#include "core/profiler.h"
#include "kernels/conv2d.h"

namespace nextvit::ops::detail {

// Checks x (N, Cin, H, W), weight (Cout, Cin/groups, kh, kw), bias (Cout) or undefined, and the
// options (clear errors naming conv2d), and returns the kernels' description of the call.
kernels::Conv2dShape conv2d_shape(const Tensor& tx, const Tensor& tw, const Tensor& tb,
                                  const Conv2dOptions& options);

// What the profiler files a convolution under (before the checks: a bad weight still has its
// time counted somewhere).
profiler::OpKind conv_op_kind(const Variable& weight, const Conv2dOptions& options);

}  // namespace nextvit::ops::detail
