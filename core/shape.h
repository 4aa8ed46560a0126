#pragma once
// Shapes and strides: plain vectors of int64, row-major (the last dimension is contiguous).
#include <cstdint>
#include <string>
#include <vector>

#include "core/checked.h"

namespace nextvit {

using Shape = std::vector<int64_t>;

// The number of elements; throws when the product does not fit in int64 (a shape read from a
// file or built from a configuration must not wrap around to a small allocation).
inline int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n = checked_mul(n, d, "shape size");
  return n;
}

// Row-major strides. Checked too: with a zero dimension the element count is 0 but the strides
// of the other dimensions can still overflow, e.g. (0, 2^62, 2^62).
inline Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc = checked_mul(acc, s[i], "shape strides");
  }
  return st;
}

// "(2, 3, 4)"
std::string shape_str(const Shape& s);

// A dimension index d in [-rank, rank) wrapped to [0, rank), or an error naming the op and the
// shape it indexes.
int64_t wrap_dim(int64_t d, const Shape& shape, const char* op);

// The shape `requested` with at most one -1 replaced so that it holds as many elements as
// `from`; an error naming the op when no such shape exists (reshape and view share it).
Shape infer_shape(const Shape& requested, const Shape& from, const char* op);

}  // namespace nextvit
