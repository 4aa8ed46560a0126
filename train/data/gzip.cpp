#include "train/data/gzip.h"

#include <stb_image.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.h"

namespace nextvit::data {
namespace {

// Byte-at-a-time CRC table for the reflected polynomial 0xEDB88320, built once.
const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  return table;
}

uint32_t read_le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Header flag bits (RFC 1952, section 2.3.1).
constexpr uint8_t kFHCRC = 0x02, kFEXTRA = 0x04, kFNAME = 0x08, kFCOMMENT = 0x10;
constexpr uint8_t kReservedFlags = 0xE0;

}  // namespace

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
  const auto& t = crc_table();
  uint32_t c = ~crc;
  for (size_t i = 0; i < size; ++i) c = t[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return ~c;
}

bool is_gzip(const uint8_t* data, size_t size) {
  return size >= 2 && data[0] == 0x1F && data[1] == 0x8B;
}

std::vector<uint8_t> gunzip(const uint8_t* data, size_t size, const std::string& what,
                            uint32_t max_output) {
  // Fixed header: ID1 ID2 CM FLG MTIME(4) XFL OS, then the optional fields FLG announces, the
  // deflate stream, and an 8-byte trailer CRC32(4) ISIZE(4), both little-endian.
  NV_CHECK(size >= 18, "gzip: {}: {} bytes is too short for a gzip file (at least 18)", what, size);
  NV_CHECK(is_gzip(data, size), "gzip: {}: bad magic {:02x} {:02x}, expected 1f 8b", what, data[0],
           data[1]);
  NV_CHECK(data[2] == 8, "gzip: {}: compression method {} is not deflate (8)", what, data[2]);
  const uint8_t flags = data[3];
  NV_CHECK((flags & kReservedFlags) == 0, "gzip: {}: reserved header flag bits set (0x{:02x})",
           what, flags);
  const size_t body_end = size - 8;  // where the trailer starts
  size_t pos = 10;
  auto need = [&](size_t n, const char* field) {
    NV_CHECK(pos + n <= body_end, "gzip: {}: truncated in the header's {} field", what, field);
  };
  if (flags & kFEXTRA) {
    need(2, "FEXTRA length");
    const size_t xlen = size_t(data[pos]) | size_t(data[pos + 1]) << 8;
    pos += 2;
    need(xlen, "FEXTRA");
    pos += xlen;
  }
  // FNAME and FCOMMENT are zero-terminated strings.
  for (uint8_t flag : {kFNAME, kFCOMMENT}) {
    if (!(flags & flag)) continue;
    const char* field = flag == kFNAME ? "FNAME" : "FCOMMENT";
    const void* nul = std::memchr(data + pos, 0, body_end - pos);
    NV_CHECK(nul != nullptr, "gzip: {}: truncated in the header's {} field", what, field);
    pos = static_cast<size_t>(static_cast<const uint8_t*>(nul) - data) + 1;
  }
  if (flags & kFHCRC) {
    need(2, "FHCRC");
    const uint32_t stored = uint32_t(data[pos]) | uint32_t(data[pos + 1]) << 8;
    const uint32_t actual = crc32(data, pos) & 0xFFFF;
    NV_CHECK(stored == actual, "gzip: {}: header CRC16 mismatch (stored {:04x}, computed {:04x})",
             what, stored, actual);
    pos += 2;
  }

  const uint32_t expected_crc = read_le32(data + body_end);
  const uint32_t expected_size = read_le32(data + body_end + 4);  // length mod 2^32
  // The decoder is handed the trailer too: stb 2.27 refuses to decode a Huffman code when fewer
  // than two input bytes remain ("bad huffman code"), even where the stream ends legitimately,
  // so it needs a little look-ahead. It stops at the final deflate block and never uses it.
  const size_t compressed = size - pos;
  NV_CHECK(compressed <= size_t(INT_MAX), "gzip: {}: {} compressed bytes exceed the 2 GiB limit",
           what, compressed);

  // The trailer's size is checked before anything is allocated: deflate cannot expand data more
  // than 1032-fold, and the caller's limit bounds it. The output buffer then has exactly that
  // size and cannot grow, so a stream that inflates to more (a gzip bomb with a lying trailer)
  // fails with "output buffer limit" instead of growing to gigabytes.
  NV_CHECK(expected_size <= max_output,
           "gzip: {}: the trailer announces {} bytes, more than the {}-byte limit for this file",
           what, expected_size, max_output);
  NV_CHECK(uint64_t(expected_size) <= uint64_t(compressed) * 1032 + 64,
           "gzip: {}: the trailer announces {} bytes, more than {} compressed bytes can hold", what,
           expected_size, compressed);
  std::vector<uint8_t> out(size_t(expected_size) + 1);  // +1: a longer stream is noticed
  const int out_len = stbi_zlib_decode_noheader_buffer(
      reinterpret_cast<char*>(out.data()), static_cast<int>(out.size()),
      reinterpret_cast<const char*>(data + pos), static_cast<int>(compressed));
  NV_CHECK(out_len >= 0,
           "gzip: {}: corrupt deflate stream, or longer than the {} bytes its "
           "trailer announces ({})",
           what, expected_size, stbi_failure_reason() ? stbi_failure_reason() : "unknown reason");
  NV_CHECK(uint32_t(out_len) == expected_size,
           "gzip: {}: inflated {} bytes but the trailer says {} (truncated or corrupt file)", what,
           out_len, expected_size);
  out.resize(size_t(out_len));
  const uint32_t actual_crc = crc32(out.data(), out.size());
  NV_CHECK(actual_crc == expected_crc,
           "gzip: {}: CRC32 mismatch (trailer {:08x}, data {:08x}); the file is corrupt or has "
           "several gzip members, which are not supported",
           what, expected_crc, actual_crc);
  return out;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  NV_CHECK(f != nullptr, "cannot open {}: {}", path, std::strerror(errno));
  std::vector<uint8_t> bytes;
  if (std::fseek(f.get(), 0, SEEK_END) == 0) {  // a size hint; pipes simply skip it
    const long end = std::ftell(f.get());
    if (end > 0) bytes.reserve(static_cast<size_t>(end));
    std::rewind(f.get());
  }
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f.get())) > 0) {
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  NV_CHECK(!std::ferror(f.get()), "error reading {}: {}", path, std::strerror(errno));
  return bytes;
}

std::vector<uint8_t> read_maybe_gzip(const std::string& path, uint32_t max_output) {
  std::vector<uint8_t> bytes = read_file(path);
  if (!is_gzip(bytes.data(), bytes.size())) return bytes;
  return gunzip(bytes.data(), bytes.size(), path, max_output);
}

}  // namespace nextvit::data
