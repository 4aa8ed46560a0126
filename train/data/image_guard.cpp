#include "train/data/image_guard.h"

#include <stb_image.h>

#include <climits>
#include <cstring>
#include <tuple>

#include "core/error.h"

namespace nextvit::data {
namespace {

uint32_t be16(const uint8_t* p) {
  return uint32_t(p[0]) << 8 | p[1];
}
uint32_t le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Which Huffman tables the segments so far defined: defined[class][id], class 0 DC, 1 AC.
struct HuffmanTables {
  bool defined[2][4] = {};
};

// One DHT segment's body: (class/id byte, 16 counts, sum(counts) symbols) repeated. Records the
// tables it defines (stb refuses a class above 1 or an id above 3 itself).
bool dht_ok(const uint8_t* p, size_t len, HuffmanTables& tables, std::string& reason) {
  size_t pos = 0;
  while (pos < len) {
    if (pos + 17 > len) {
      reason = "JPEG Huffman table (DHT) truncated";
      return false;
    }
    uint32_t n = 0;
    for (int i = 0; i < 16; ++i) n += p[pos + 1 + i];
    if (n > 256) {
      reason = "JPEG Huffman table (DHT) with " + std::to_string(n) + " codes, more than 256";
      return false;
    }
    const int table_class = p[pos] >> 4, id = p[pos] & 15;
    if (table_class <= 1 && id <= 3) tables.defined[table_class][id] = true;
    pos += 17 + n;
  }
  return true;
}

// One SOS segment's header: Ns, then (component, DC table << 4 | AC table) for each, then Ss,
// Se, Ah / Al. stb decodes a scan with tables it never checks were defined (it reads whatever
// the table memory holds: a symbol index of 18494 into a 256-entry table, found by fuzz_image
// under UBSan), so each table the scan decodes with must have come in a DHT before it: in a
// baseline or sequential frame both tables of every component; in a progressive one the DC
// table for a first DC scan (Ss = 0, Ah = 0; a DC refinement reads raw bits), the AC table for
// an AC scan (Ss > 0).
bool sos_ok(const uint8_t* p, size_t len, bool progressive, const HuffmanTables& tables,
            std::string& reason) {
  if (len < 1) return true;  // stb refuses a short SOS itself
  const size_t ns = p[0];
  if (len < 1 + 2 * ns + 3) return true;
  const uint8_t ss = p[1 + 2 * ns], ah = p[3 + 2 * ns] >> 4;
  const bool uses_dc = !progressive || (ss == 0 && ah == 0), uses_ac = !progressive || ss > 0;
  for (size_t c = 0; c < ns; ++c) {
    const int dc = p[2 + 2 * c] >> 4, ac = p[2 + 2 * c] & 15;
    for (const auto& [used, table_class, id] :
         {std::tuple{uses_dc, 0, dc}, std::tuple{uses_ac, 1, ac}}) {
      if (used && id <= 3 && !tables.defined[table_class][id]) {
        reason = std::string("JPEG scan uses ") + (table_class == 0 ? "DC" : "AC") +
                 " Huffman table " + std::to_string(id) +
                 ", which no DHT segment before it defines";
        return false;
      }
    }
  }
  return true;
}

}  // namespace

bool jpeg_huffman_tables_ok(const uint8_t* d, size_t size, std::string& reason) {
  // stb accepts any number of 0xFF fill bytes before the SOI marker (FF FF .. FF D8), so the
  // check must too: found by fuzz_image.
  size_t pos = 0;
  while (pos < size && d[pos] == 0xFF) ++pos;
  if (pos == 0 || pos >= size || d[pos] != 0xD8) return true;  // not a JPEG
  ++pos;
  HuffmanTables tables;
  bool progressive = false;
  while (pos + 4 <= size) {
    if (d[pos] != 0xFF) {  // entropy-coded data after a SOS: skip to the next real marker
      ++pos;
      continue;
    }
    const uint8_t marker = d[pos + 1];
    // Fill bytes, byte stuffing (FF 00), restart markers and markers without a length.
    if (marker == 0xFF || marker == 0x00 || (marker >= 0xD0 && marker <= 0xD8) || marker == 0x01) {
      pos += marker == 0xFF ? 1 : 2;
      continue;
    }
    if (marker == 0xD9) return true;  // end of image
    const size_t len = be16(d + pos + 2);
    if (len < 2) {
      reason = "JPEG segment with a length below 2";
      return false;
    }
    const size_t body = std::min(len - 2, size - pos - 4);
    if (marker == 0xC4 && !dht_ok(d + pos + 4, body, tables, reason)) return false;
    if (marker == 0xDA && !sos_ok(d + pos + 4, body, progressive, tables, reason)) return false;
    if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
      progressive = marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE;
    }
    pos += 2 + len;
  }
  return true;
}

bool png_chunks_ok(const uint8_t* d, size_t size, bool complete, std::string& reason) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10};
  if (size < 8 || std::memcmp(d, kSignature, 8) != 0) return true;  // not a PNG
  size_t pos = 8;
  bool seen_idat = false;
  while (pos + 8 <= size) {
    const uint64_t len = uint64_t(be16(d + pos)) << 16 | be16(d + pos + 2);
    if (std::memcmp(d + pos + 4, "IEND", 4) == 0) return true;
    // stb memcpy()s an empty first IDAT into its still-null buffer (undefined behaviour, found
    // by fuzz_image); no encoder writes one.
    if (len == 0 && !seen_idat && std::memcmp(d + pos + 4, "IDAT", 4) == 0) {
      reason = fmt::format("PNG with an empty first IDAT chunk at byte {}", pos);
      return false;
    }
    seen_idat = seen_idat || std::memcmp(d + pos + 4, "IDAT", 4) == 0;
    if (complete && pos + 12 + len > size) {
      reason = fmt::format(
          "PNG chunk '{}' at byte {} claims {} bytes, past the end of the {}-byte "
          "file",
          std::string(reinterpret_cast<const char*>(d + pos + 4), 4), pos, len, size);
      return false;
    }
    pos += 12 + len;
  }
  return true;
}

bool bmp_size_ok(const uint8_t* d, size_t size, bool complete, std::string& reason) {
  if (!complete || size < 34 || d[0] != 'B' || d[1] != 'M') return true;
  const uint32_t header_size = le32(d + 14);
  if (header_size < 40) return true;  // OS/2 headers: stb checks those itself
  const uint64_t offset = le32(d + 10);
  const int64_t width = static_cast<int32_t>(le32(d + 18));
  const int64_t height = static_cast<int32_t>(le32(d + 22));
  const uint32_t bpp = uint32_t(d[28]) | uint32_t(d[29]) << 8;
  const uint32_t compression = le32(d + 30);
  if (compression != 0 || width <= 0 || bpp == 0) return true;  // only plain BI_RGB rows
  const uint64_t row = (uint64_t(width) * bpp + 31) / 32 * 4;
  const uint64_t rows = uint64_t(height < 0 ? -height : height);
  if (offset + row * rows > size) {
    reason = "BMP truncated: its header announces " + std::to_string(offset + row * rows) +
             " bytes, the file has " + std::to_string(size);
    return false;
  }
  return true;
}

bool check_image_bytes(const uint8_t* data, size_t size, bool complete, int64_t max_pixels, int& w,
                       int& h, std::string& reason) {
  if (!jpeg_huffman_tables_ok(data, size, reason)) return false;
  if (size > size_t(INT_MAX)) {
    reason = "file larger than 2 GB";
    return false;
  }
  // A PNG states its size in the IHDR chunk; stb_image reports one above 2^30 bytes only as
  // "unknown image type", so the pixel limit is checked here first, with the real reason.
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10};
  if (size >= 24 && std::memcmp(data, kPng, 8) == 0 && std::memcmp(data + 12, "IHDR", 4) == 0) {
    auto be32 = [&](size_t at) {
      return int64_t(data[at]) << 24 | int64_t(data[at + 1]) << 16 | int64_t(data[at + 2]) << 8 |
             int64_t(data[at + 3]);
    };
    const int64_t pw = be32(16), ph = be32(20);
    // The PNG specification caps each side at 2^31 - 1; checking that first also keeps the
    // product below 2^62, so it cannot overflow.
    if (pw > INT32_MAX || ph > INT32_MAX) {
      reason = fmt::format("PNG header states {}x{}, above the format's 2^31 - 1 per side", pw, ph);
      return false;
    }
    if (pw * ph > max_pixels) {
      reason = fmt::format("{}x{} = {} pixels, above the limit of {} (--max-image-pixels)", pw, ph,
                           pw * ph, max_pixels);
      return false;
    }
  }
  int c = 0;
  if (!stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &c)) {
    const char* why = stbi_failure_reason();
    reason = std::string("stb_image: ") + (why != nullptr ? why : "no reason");
    return false;
  }
  if (w <= 0 || h <= 0 || int64_t(w) * h > max_pixels) {
    reason = fmt::format("{}x{} = {} pixels, above the limit of {} (--max-image-pixels)", w, h,
                         int64_t(w) * h, max_pixels);
    return false;
  }
  return png_chunks_ok(data, size, complete, reason) && bmp_size_ok(data, size, complete, reason);
}

}  // namespace nextvit::data
