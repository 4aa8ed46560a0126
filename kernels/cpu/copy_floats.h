#pragma once
// A short run of floats copied inline (kernels/cpu/conv2d.cpp, conv_direct.cpp): the runs there
// are an image row or a small image's plane (2 to a few hundred floats), where a memcpy call
// costs about as much as the copy itself.
#include <cstdint>

#include "kernels/cpu/isa.h"
#if NEXTVIT_CPU_X86
#include <immintrin.h>
#endif

namespace nextvit::kernels::cpu {

// d[0, n) = s[0, n), in 8-float vectors and a masked one for the tail (no read or write past
// either end: s may be the last row of a tensor). Small n is the common case here, where a
// memcpy call would cost more than the copy.
inline void copy_floats(const float* s, float* d, int64_t n) {
  int64_t q = 0;
#if NEXTVIT_CPU_X86
  for (; q + 8 <= n; q += 8) _mm256_storeu_ps(d + q, _mm256_loadu_ps(s + q));
  if (q < n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - q)), lanes);
    _mm256_maskstore_ps(d + q, m, _mm256_maskload_ps(s + q, m));
    return;
  }
#endif
  for (; q < n; ++q) d[q] = s[q];
}

}  // namespace nextvit::kernels::cpu
