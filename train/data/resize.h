#pragma once
// Bilinear resampling of uint8 HWC images, antialiased when shrinking: the algorithm of PIL's
// Image.resize(BILINEAR) and of torchvision's resize(antialias=True). Each output pixel is a
// normalised triangle-filter average of the input pixels under it; the triangle is one input
// pixel wide when enlarging (plain bilinear, half-pixel centres) and `scale` pixels wide when
// shrinking, so every input pixel contributes and small detail does not alias.
#include "train/data/image.h"

namespace nextvit::data {

// Resamples the window rows [top, top + crop_h) x columns [left, left + crop_w) of `src` to
// out_h x out_w. Only pixels inside the window are read (torchvision's resized_crop).
Image resize_crop(const Image& src, int top, int left, int crop_h, int crop_w, int out_h,
                  int out_w);

// The whole image to out_h x out_w.
Image resize(const Image& src, int out_h, int out_w);

}  // namespace nextvit::data
