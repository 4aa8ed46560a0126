#pragma once
// Reading gzip files (RFC 1952) without zlib: the header is parsed here and the raw deflate
// stream is inflated by stb_image's zlib decoder; the CRC-32 and length in the trailer are then
// checked, because that decoder does not notice a truncated stream on its own.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nextvit::data {

// CRC-32 (the IEEE polynomial that gzip and PNG use), continuing from `crc` (0 to start).
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

// True when the bytes start with the gzip magic 1f 8b.
bool is_gzip(const uint8_t* data, size_t size);

// Inflates one gzip member. `what` (usually the file's path) names the input in every error.
// At most max_output bytes are produced: a larger announced size is refused before any
// allocation, and a stream longer than announced fails instead of growing the buffer.
constexpr uint32_t kMaxGunzipBytes = uint32_t(1) << 30;
std::vector<uint8_t> gunzip(const uint8_t* data, size_t size, const std::string& what,
                            uint32_t max_output = kMaxGunzipBytes);

// Reads a whole file into memory; throws naming the path when it cannot.
std::vector<uint8_t> read_file(const std::string& path);

// Reads a file and inflates it when it is gzip, so callers accept both `x` and `x.gz`.
std::vector<uint8_t> read_maybe_gzip(const std::string& path,
                                     uint32_t max_output = kMaxGunzipBytes);

}  // namespace nextvit::data
