#include "core/shape.h"

#include "core/error.h"

namespace nextvit {

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  if (s.size() == 1) out += ",";
  return out + ")";
}

int64_t wrap_dim(int64_t d, const Shape& shape, const char* op) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  NV_CHECK(d >= -rank && d < rank, "{}: dimension {} is out of range for input {}", op, d,
           shape_str(shape));
  return d < 0 ? d + rank : d;
}

Shape infer_shape(const Shape& requested, const Shape& from, const char* op) {
  const int64_t numel = shape_numel(from);
  Shape out = requested;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      NV_CHECK(infer < 0, "{}: only one dimension may be -1 in {}", op, shape_str(requested));
      infer = static_cast<int>(i);
    } else {
      NV_CHECK(out[i] >= 0, "{}: invalid size {} in {}", op, out[i], shape_str(requested));
      known = checked_mul(known, out[i], op);
    }
  }
  if (infer >= 0 && known > 0 && numel % known == 0) out[infer] = numel / known;
  const bool resolved = infer < 0 || out[infer] != -1;
  NV_CHECK(resolved && shape_numel(out) == numel, "{}: cannot reshape input {} ({} elements) to {}",
           op, shape_str(from), numel, shape_str(requested));
  return out;
}

}  // namespace nextvit
