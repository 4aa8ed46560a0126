#pragma once
// e^x written so that a compiler vectorises a loop of it (libm's expf is a call per element,
// ~20 cycles each: most of a softmax row's time). The usual scheme of vector math libraries
// (Cephes, SLEEF): x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite: ln2 in a high part exact to
// 12 bits and a low part, so n ln2 is subtracted without rounding), e^r by its Taylor series to
// degree 7 (truncation below 6e-9 relative: under 0.1 ulp), times 2^n built in the exponent
// bits. Within 2 ulp of the correctly rounded result; PyTorch's CPU softmax uses SLEEF's
// 1-ulp exp, so neither is libm's bits.
//
// Range: x < -87 gives 0 (e^x is then below FLT_MIN, a subnormal; flushed), x > 88 gives +inf
// (e^88.72 overflows; the few representable values above e^88 are not needed by the softmax,
// whose arguments are <= 0), NaN gives NaN.
#include <cmath>
#include <cstdint>
#include <cstring>

namespace nextvit::kernels::cpu {

inline float exp_lane(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // 12 significant bits: n * kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kLo = -87.0f, kHi = 88.0f;
  float t = x < kHi ? x : kHi;  // NaN compares false: it takes kLo below, then is restored
  t = t > kLo ? t : kLo;
  // n = round(t / ln2), in [-126, 127]: adding 1.5 * 2^23 leaves no fraction bits, so the
  // addition itself rounds to the nearest integer (the default rounding mode).
  constexpr float kRound = 12582912.0f;
  const float n = (t * kLog2e + kRound) - kRound;
  float r = std::fma(n, -kLn2Hi, t);
  r = std::fma(n, -kLn2Lo, r);
  float p = 1.0f / 5040.0f;
  p = std::fma(p, r, 1.0f / 720.0f);
  p = std::fma(p, r, 1.0f / 120.0f);
  p = std::fma(p, r, 1.0f / 24.0f);
  p = std::fma(p, r, 1.0f / 6.0f);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  float y = p * two_n;
  y = x < kLo ? 0.0f : y;
  y = x > kHi ? HUGE_VALF : y;
  return x == x ? y : x;
}

}  // namespace nextvit::kernels::cpu
