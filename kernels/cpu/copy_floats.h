#pragma once
// A short run of floats copied inline (kernels/cpu/conv_im2col.cpp, conv_direct.cpp): the runs
// there are an image row or a small image's plane (2 to a few hundred floats), where a memcpy call
// costs about as much as the copy itself.
#include <cstdint>

#include "kernels/cpu/isa.h"
#if NEXTVIT_CPU_X86
#include <immintrin.h>
#endif

namespace nextvit::kernels::cpu {

// d[0, n) = s[0, n), in 8-float vectors, then one of 4, then single floats (no read or write
// past either end: s may be the last row of a tensor). Small n is the common case here (4 and 1
// are the 2 x 2 and 1 x 1 images of CPU training's last stages), where a memcpy call would cost
// more than the copy, and so would a masked store (vmaskmovps: microcoded on AMD's Zen, which
// made the gathers of 2 x 2 images several times slower).
inline void copy_floats(const float* s, float* d, int64_t n) {
  int64_t q = 0;
#if NEXTVIT_CPU_X86
  for (; q + 8 <= n; q += 8) _mm256_storeu_ps(d + q, _mm256_loadu_ps(s + q));
  if (q + 4 <= n) {
    _mm_storeu_ps(d + q, _mm_loadu_ps(s + q));
    q += 4;
  }
#endif
  for (; q < n; ++q) d[q] = s[q];
}

}  // namespace nextvit::kernels::cpu
