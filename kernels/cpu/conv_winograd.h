#pragma once
// The Winograd convolution F(2x2, 3x3) on the CPU (kernels/cpu/conv_winograd.cpp): the forward
// of a 3x3, stride-1 convolution (Next-ViT's MHCA, 32 in and 32 out per group; the stem's
// 64 -> 32 and 32 -> 64 at 112 x 112) with 16 multiply-adds per 2 x 2 outputs and pair of
// channels instead of 36. kernels/cpu/conv2d.cpp takes it, ahead of the direct kernel, when
// conv_winograd_applies says so.
#include "kernels/conv2d.h"
#include "kernels/cpu/conv_output_pass.h"

namespace nextvit::kernels::cpu {

// Whether conv_winograd_forward serves this shape under the current GEMM ISA family (AVX-512 or
// AVX2; the portable family has none) and set_conv_winograd.
bool conv_winograd_applies(const Conv2dShape& s);

// y = pass(conv(x, w)) for a shape conv_winograd_applies to; overwrites y.
void conv_winograd_forward(const Conv2dShape& s, const float* x, const float* w,
                           const ConvOutputPass& pass, float* y);

// Turns the Winograd kernel on (the default) or off for every later convolution, so that tests,
// benchmarks and users who want the direct kernel's sums (those of PyTorch's order of
// arithmetic) can have them; returns the previous setting.
bool set_conv_winograd(bool enabled);
// Whether the Winograd kernel is on (set_conv_winograd, NEXTVIT_WINOGRAD) and has a form for the
// current GEMM ISA family: what `nextvit --version` reports.
bool conv_winograd_available();

}  // namespace nextvit::kernels::cpu
