#pragma once
// The IDX format of MNIST and Fashion-MNIST: a 4-byte magic 00 00 <type> <ndims>, then ndims
// big-endian uint32 sizes, then the elements in row-major order. Only unsigned bytes (type 0x08)
// are read, which is what both data sets store. Files may be gzip-compressed.
#include <cstdint>
#include <string>
#include <vector>

#include "core/shape.h"

namespace nextvit::data {

struct IdxArray {
  Shape dims;                 // e.g. (60000, 28, 28)
  std::vector<uint8_t> data;  // prod(dims) bytes, row-major
};

// Parses IDX bytes; `what` (the path) names the input in errors: a wrong magic, an element
// type other than unsigned byte, or a size that disagrees with the header (truncated or
// trailing bytes).
IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& what);

// Reads an IDX file, plain or gzip-compressed.
IdxArray read_idx(const std::string& path);

}  // namespace nextvit::data
