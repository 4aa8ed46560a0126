#pragma once
// Shapes and strides: plain vectors of int64, row-major (the last dimension is contiguous).
#include <cstdint>
#include <string>
#include <vector>

namespace nextvit {

using Shape = std::vector<int64_t>;

inline int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

inline Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

// "(2, 3, 4)"
std::string shape_str(const Shape& s);

}  // namespace nextvit
