#pragma once
// Overflow-checked size arithmetic. Sizes in this code are int64; a product of sizes that came
// from a file, a configuration or the command line can exceed 2^63, and signed overflow is
// undefined behaviour that in practice wraps to a small or negative size and leads to a
// too-small allocation. Every such product goes through these helpers, which throw a
// nextvit::Error naming `what` instead.
#include <cstdint>

#include "core/error.h"

namespace nextvit {

inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t out;
  NV_CHECK(!__builtin_mul_overflow(a, b, &out), "{}: {} x {} overflows 64-bit integers", what, a,
           b);
  return out;
}

inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t out;
  NV_CHECK(!__builtin_add_overflow(a, b, &out), "{}: {} + {} overflows 64-bit integers", what, a,
           b);
  return out;
}

}  // namespace nextvit
