#pragma once
// The direct CPU convolution for small groups (kernels/cpu/conv_direct.cpp): the forward of a
// stride-1 or stride-2 convolution whose groups have few output channels (Next-ViT's MHCA: 3x3,
// 32 in and 32 out per group; the stem's 64 -> 64 at stride 2), without im2col and without the
// lane waste of a 14-row GEMM tile on 32 output channels. kernels/cpu/conv2d.cpp takes it when
// conv_direct_applies says so.
#include "kernels/conv2d.h"
#include "kernels/cpu/conv_output_pass.h"

namespace nextvit::kernels::cpu {

// Whether conv_direct_forward serves this shape under the current GEMM ISA family (AVX-512 or
// AVX2; the portable family has no direct kernel) and set_conv_direct.
bool conv_direct_applies(const Conv2dShape& s);

// y = pass(conv(x, w)) for a shape conv_direct_applies to; overwrites y.
void conv_direct_forward(const Conv2dShape& s, const float* x, const float* w,
                         const ConvOutputPass& pass, float* y);

// Turns the direct kernel on (the default) or off for every later convolution, so that tests
// and benchmarks can compare it with the GEMM paths; returns the previous setting.
bool set_conv_direct(bool enabled);

}  // namespace nextvit::kernels::cpu
