#pragma once
// dy where the ReLU output y is > 0, else +0 (a select, as PyTorch's threshold_backward: a NaN
// in dy stays out of masked cells). Done on the bits so that the loops using it vectorise: a
// float select (or branch) in a loop is not if-converted under -ftrapping-math, and a
// data-dependent branch on the sign of y mispredicts half the time.
#include <cstdint>
#include <cstring>

namespace nextvit::kernels::cpu {

inline float relu_mask(float dy, float y) {
  uint32_t bits;
  std::memcpy(&bits, &dy, sizeof bits);
  bits &= 0u - static_cast<uint32_t>(y > 0.0f);
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

}  // namespace nextvit::kernels::cpu
