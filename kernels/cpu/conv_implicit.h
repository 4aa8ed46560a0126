#pragma once
// The implicit-GEMM forward of the CPU convolution (kernels/cpu/conv_implicit.cpp): stride 1,
// wide output rows, the input read where it lies by the GEMM's row-gathering micro-kernel.
#include "kernels/cpu/conv_geometry.h"
#include "kernels/cpu/conv_output_pass.h"

namespace nextvit::kernels::cpu::conv_detail {

// Whether forward_implicit serves this convolution (AVX-512 only).
bool use_implicit(const Geometry& g);

// y = pass(conv(x, w)); overwrites y.
void forward_implicit(const Geometry& g, const float* x, const float* w, const ConvOutputPass& pass,
                      float* y);

}  // namespace nextvit::kernels::cpu::conv_detail
