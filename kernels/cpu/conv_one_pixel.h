#pragma once
// Convolutions of one-pixel maps (kernels/cpu/conv_one_pixel.cpp): a 1 x 1 input giving a 1 x 1
// output, as in the last stage of a small model (CPU training's nextvit_fmnist: 28 x 28 images
// are 1 x 1 after a stride of 32). Every image is then one row of C values, and the convolution
// is a matrix product over the batch in place: no im2col, no gathering of images side by side
// (one float per image and channel), and for a k x k kernel with padding only the one tap that
// lands on the pixel instead of k*k taps of which all but one read the padding.
// kernels/cpu/conv2d.cpp takes it when conv_one_pixel_applies says so.
#include "kernels/conv2d.h"
#include "kernels/cpu/conv_output_pass.h"

namespace nextvit::kernels::cpu {

// Whether the shape is one pixel in and out with its single reading tap inside the kernel (and
// set_conv_one_pixel has not turned these products off).
bool conv_one_pixel_applies(const Conv2dShape& s);

// y = pass(conv(x, w)); overwrites y.
void conv_one_pixel_forward(const Conv2dShape& s, const float* x, const float* w,
                            const ConvOutputPass& pass, float* y);
// dx = conv^T(dy, w); overwrites dx.
void conv_one_pixel_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx);
// dw = dy^T x at the reading tap, 0 at every other tap; overwrites dw.
void conv_one_pixel_backward_weight(const Conv2dShape& s, const float* x, const float* dy,
                                    float* dw);

// Turns these products on (the default) or off for every later convolution, so that tests and
// benchmarks can compare them with the general paths; returns the previous setting.
bool set_conv_one_pixel(bool enabled);

}  // namespace nextvit::kernels::cpu
