#include "train/data/idx.h"

#include "core/error.h"
#include "train/data/gzip.h"

namespace nextvit::data {
namespace {

const char* idx_type_name(uint8_t code) {
  switch (code) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
  }
  return nullptr;
}

uint32_t read_be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

}  // namespace

IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& what) {
  const size_t n = bytes.size();
  NV_CHECK(n >= 4, "idx: {}: {} bytes is too short for an IDX header", what, n);
  const uint8_t* p = bytes.data();
  NV_CHECK(p[0] == 0 && p[1] == 0,
           "idx: {}: bad magic {:02x} {:02x} {:02x} {:02x}, an IDX file starts with 00 00 <type> "
           "<ndims>",
           what, p[0], p[1], p[2], p[3]);
  const char* type = idx_type_name(p[2]);
  NV_CHECK(type != nullptr, "idx: {}: unknown element type 0x{:02x} in the magic", what, p[2]);
  NV_CHECK(p[2] == 0x08, "idx: {}: element type {} (0x{:02x}) is not supported, only unsigned byte",
           what, type, p[2]);
  const int ndims = p[3];
  NV_CHECK(ndims >= 1, "idx: {}: the magic announces 0 dimensions", what);
  const size_t header = 4 + 4 * size_t(ndims);
  NV_CHECK(n >= header, "idx: {}: truncated header: {} dimensions need {} bytes, the file has {}",
           what, ndims, header, n);

  IdxArray out;
  uint64_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    const uint32_t size = read_be32(p + 4 + 4 * d);
    out.dims.push_back(int64_t(size));
    count *= size;
    // 2^40 bytes is far beyond any IDX file; checking here keeps the product from overflowing.
    NV_CHECK(count <= (uint64_t(1) << 40), "idx: {}: dimensions {} are implausibly large", what,
             shape_str(out.dims));
  }
  const uint64_t body = n - header;
  NV_CHECK(body >= count, "idx: {}: truncated: dimensions {} need {} data bytes, the file has {}",
           what, shape_str(out.dims), count, body);
  NV_CHECK(body == count,
           "idx: {}: {} bytes follow the header but dimensions {} account for only {}", what, body,
           shape_str(out.dims), count);
  out.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return out;
}

IdxArray read_idx(const std::string& path) {
  return parse_idx(read_maybe_gzip(path), path);
}

}  // namespace nextvit::data
