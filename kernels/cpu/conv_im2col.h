#pragma once
// im2col and its adjoint for the CPU convolution (kernels/cpu/conv2d.cpp, "How data moves"):
// the matrix whose column q holds the input patch output position q sees, and the scatter-add
// of such a matrix back into an input gradient.
#include <cstdint>

#include "kernels/cpu/conv_geometry.h"

namespace nextvit::kernels::cpu::conv_detail {

// The im2col matrix of a chunk for group grp: (kg, width), images side by side; x is the whole
// input (N, C, H, W).
void build_col(const Geometry& g, const float* x, int64_t grp, const Chunk& ch, float* col);

// The adjoint of im2col for one image and the output positions [p0, p1): dx_c[ih, iw] +=
// src[row][p - p0] for every (row, p) im2col would have read from (ih, iw). dx points at the
// group's first input channel; src has leading dimension ld.
void col2im(const Geometry& g, const float* src, int64_t ld, int64_t p0, int64_t p1, float* dx);

}  // namespace nextvit::kernels::cpu::conv_detail
