#pragma once
// The CPU convolution's output pass (kernels/cpu/conv2d.cpp): what happens to a run of one
// output channel's values after the GEMM wrote them, while they are still in cache. Always the
// bias; in eval-mode fusion also the BatchNorm's affine map and the ReLU (Conv2dEpilogue):
//
//   dst[q] = relu?((src[q] + bias[c]) * scale[c] + shift[c])
//
// src and dst may be the same run (in place) or different (the scatter of a gathered chunk).
// The operations and their order are those of the unfused ops (the bias added by the
// convolution, then the BatchNorm kernel's x * alpha + beta, then max(v, 0)), so fused and
// unfused outputs agree.
#include <cstdint>

#include "kernels/conv2d.h"

namespace nextvit::kernels::cpu {

class ConvOutputPass {
 public:
  // bias may be null (0); the epilogue's arrays are indexed by absolute output channel.
  ConvOutputPass(const float* bias, const Conv2dEpilogue& epilogue)
      : bias_(bias), e_(epilogue), affine_(epilogue.scale != nullptr) {}

  // Whether an in-place pass changes anything (a plain convolution without bias: no).
  bool needed() const { return bias_ != nullptr || affine_ || e_.relu; }

  // dst[0, n) = finished src[0, n) for output channel c.
  void run(int64_t c, const float* src, float* dst, int64_t n) const {
    const float b = bias_ ? bias_[c] : 0.0f;
    const float scale = affine_ ? e_.scale[c] : 1.0f, shift = affine_ ? e_.shift[c] : 0.0f;
    if (affine_) {
      e_.relu ? finish<true, true>(src, dst, n, b, scale, shift)
              : finish<true, false>(src, dst, n, b, scale, shift);
    } else {
      e_.relu ? finish<false, true>(src, dst, n, b, scale, shift)
              : finish<false, false>(src, dst, n, b, scale, shift);
    }
  }

 private:
  template <bool kAffine, bool kRelu>
  static void finish(const float* src, float* dst, int64_t n, float b, float scale, float shift) {
    for (int64_t q = 0; q < n; ++q) {
      float v = src[q] + b;
      if constexpr (kAffine) v = v * scale + shift;
      if constexpr (kRelu) v = v > 0.0f ? v : 0.0f;
      dst[q] = v;
    }
  }

  const float* bias_;
  Conv2dEpilogue e_;
  bool affine_;
};

}  // namespace nextvit::kernels::cpu
