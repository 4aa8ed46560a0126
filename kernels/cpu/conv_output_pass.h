#pragma once
// The CPU convolution's output pass (kernels/cpu/conv2d.cpp): what happens to a run of one
// output channel's values after the GEMM wrote them, while they are still in cache. Always the
// bias; in eval-mode fusion also the BatchNorm's affine map, the ReLU and the residual add of
// a block (Conv2dEpilogue):
//
//   dst[q] = relu?((src[q] + bias[c]) * scale[c] + shift[c]) + residual[dst + q - y]
//
// src and dst may be the same run (in place) or different (a multi-image chunk scattered into its
// images' planes); dst always lies in the output y, and the residual element of dst[q] is the one
// at the same offset from the residual's start. The operations and their order are those of the
// unfused ops (the bias added by the convolution, then the BatchNorm kernel's x * alpha + beta,
// then max(v, 0), then the add of the residual), so fused and unfused outputs agree.
#include <cstdint>

#include "kernels/conv2d.h"

namespace nextvit::kernels::cpu {

class ConvOutputPass {
 public:
  // bias may be null (0); the epilogue's arrays are indexed by absolute output channel; y is
  // the output the runs are written into (needed only with a residual).
  ConvOutputPass(const float* bias, const Conv2dEpilogue& epilogue, const float* y = nullptr)
      : bias_(bias), e_(epilogue), y_(y), affine_(epilogue.scale != nullptr) {}

  // Whether an in-place pass changes anything (a plain convolution without bias: no).
  bool needed() const { return bias_ != nullptr || affine_ || e_.relu || e_.residual != nullptr; }

  // dst[0, n) = finished src[0, n) for output channel c.
  void run(int64_t c, const float* src, float* dst, int64_t n) const {
    const float b = bias_ ? bias_[c] : 0.0f;
    const float scale = affine_ ? e_.scale[c] : 1.0f, shift = affine_ ? e_.shift[c] : 0.0f;
    if (e_.residual != nullptr) {
      const float* r = e_.residual + (dst - y_);
      dispatch<true>(src, dst, n, b, scale, shift, r);
    } else {
      dispatch<false>(src, dst, n, b, scale, shift, nullptr);
    }
  }

  // dst[0, n) = finished src[0, n) for output channels c0, c0 + 1, ...: a run across the
  // channels of one pixel (kernels/cpu/conv_one_pixel.cpp, whose images are rows of channels).
  void run_across(int64_t c0, const float* src, float* dst, int64_t n) const {
    const float* r = e_.residual != nullptr ? e_.residual + (dst - y_) : nullptr;
    for (int64_t q = 0; q < n; ++q) {
      const int64_t c = c0 + q;
      float v = src[q] + (bias_ ? bias_[c] : 0.0f);
      if (affine_) v = v * e_.scale[c] + e_.shift[c];
      if (e_.relu) v = v > 0.0f ? v : 0.0f;
      if (r != nullptr) v = r[q] + v;
      dst[q] = v;
    }
  }

 private:
  template <bool kResidual>
  void dispatch(const float* src, float* dst, int64_t n, float b, float scale, float shift,
                const float* r) const {
    if (affine_) {
      e_.relu ? finish<true, true, kResidual>(src, dst, n, b, scale, shift, r)
              : finish<true, false, kResidual>(src, dst, n, b, scale, shift, r);
    } else {
      e_.relu ? finish<false, true, kResidual>(src, dst, n, b, scale, shift, r)
              : finish<false, false, kResidual>(src, dst, n, b, scale, shift, r);
    }
  }

  template <bool kAffine, bool kRelu, bool kResidual>
  static void finish(const float* src, float* dst, int64_t n, float b, float scale, float shift,
                     const float* r) {
    for (int64_t q = 0; q < n; ++q) {
      float v = src[q] + b;
      if constexpr (kAffine) v = v * scale + shift;
      if constexpr (kRelu) v = v > 0.0f ? v : 0.0f;
      if constexpr (kResidual) v = r[q] + v;
      dst[q] = v;
    }
  }

  const float* bias_;
  Conv2dEpilogue e_;
  const float* y_;
  bool affine_;
};

}  // namespace nextvit::kernels::cpu
