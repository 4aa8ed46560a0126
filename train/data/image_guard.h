#pragma once
// Checks an encoded image before stb_image touches it.
//
// 1. JPEG Huffman tables: stb_image 2.27 (Debian 12) copies a DHT segment's symbol values into
//    a 256-byte table without checking that the 16 counts sum to at most 256, so a crafted
//    JPEG writes out of bounds -- inside stbi_info already (fixed upstream in 2.28). Every DHT
//    segment of the file is walked and checked here first. Nor does it check that the tables a
//    scan (SOS) decodes with were ever defined, and reads out of bounds through such a table:
//    each scan's tables must come in a DHT before it.
// 2. Size: the dimensions from the header are compared against a pixel limit before any pixel
//    buffer is allocated (a 52-byte file may claim 41228x12106).
// 3. PNG chunks: stb 2.27 grows its IDAT buffer to a chunk's claimed length before reading it
//    (108 bytes made it allocate 2 GB, found by fuzz_image); every chunk must fit in the file.
// 4. Uncompressed BMP: stb fills a truncated pixel array with black silently; the file must hold
//    every row its header announces.
#include <cstddef>
#include <cstdint>
#include <string>

namespace nextvit::data {

// Default --max-image-pixels: 8192x8192. PIL's limit is 89 M; at 3 bytes a pixel this keeps one
// decode under 200 MB, far below a 30000x30000 image's 2.7 GB.
constexpr int64_t kDefaultMaxImagePixels = int64_t(1) << 26;

// Returns false and sets `reason` when the bytes (a whole file, or its first part when
// `complete` is false) must not be given to stb_image.
bool jpeg_huffman_tables_ok(const uint8_t* data, size_t size, std::string& reason);
bool png_chunks_ok(const uint8_t* data, size_t size, bool complete, std::string& reason);
bool bmp_size_ok(const uint8_t* data, size_t size, bool complete, std::string& reason);

// stbi_info on the bytes, then the checks above and the pixel limit. On success sets w and h.
bool check_image_bytes(const uint8_t* data, size_t size, bool complete, int64_t max_pixels, int& w,
                       int& h, std::string& reason);

}  // namespace nextvit::data
