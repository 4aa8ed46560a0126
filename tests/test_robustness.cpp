// Issue 11: hostile and careless input. Each TEST_CASE is one finding of the issue; each failed
// before its fix (the comment says how).
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/json_input.h"
#include "core/safetensors.h"
#include "models/memory_estimate.h"
#include "models/nextvit_info.h"
#include "models/weights.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/data/gzip.h"
#include "train/data/image_folder.h"
#include "train/data/image_guard.h"
#include "train/data/system_decoders.h"
#include "train/interrupt.h"
#include "train/optim/adamw.h"
#include "train/trainer.h"

using namespace nextvit;
namespace fs = std::filesystem;

namespace {

using nextvit::test::TempDir;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

void put_le(std::vector<uint8_t>& b, size_t at, uint32_t v, int n) {
  for (int i = 0; i < n; ++i) b[at + i] = uint8_t(v >> (8 * i));
}

// A BMP header (24-bit, uncompressed) claiming w x h, followed by `pixel_bytes` of pixels.
std::vector<uint8_t> bmp(int w, int h, size_t pixel_bytes, uint8_t value = 128) {
  std::vector<uint8_t> b(54 + pixel_bytes, value);
  b[0] = 'B';
  b[1] = 'M';
  put_le(b, 2, uint32_t(b.size()), 4);
  put_le(b, 6, 0, 4);
  put_le(b, 10, 54, 4);
  put_le(b, 14, 40, 4);
  put_le(b, 18, uint32_t(w), 4);
  put_le(b, 22, uint32_t(h), 4);
  put_le(b, 26, 1, 2);
  put_le(b, 28, 24, 2);
  put_le(b, 30, 0, 4);
  put_le(b, 34, uint32_t(pixel_bytes), 4);
  for (size_t i = 38; i < 54; ++i) b[i] = 0;
  return b;
}

std::vector<uint8_t> complete_bmp(int w, int h, uint8_t value) {
  return bmp(w, h, size_t((w * 3 + 3) / 4 * 4) * h, value);
}

// A configuration of the tiny test model with one field replaced by raw JSON text.
std::string tiny_config_with(const std::string& key, const std::string& raw) {
  nlohmann::json j =
      read_json_file(std::string(NEXTVIT_TEST_DATA_DIR) + "/nextvit_tiny_config.json");
  std::string text = j.dump();
  const std::string marker = "\"" + key + "\":";
  const size_t at = text.find(marker);
  if (at == std::string::npos)
    return text.substr(0, text.size() - 1) + ",\"" + key + "\":" + raw + "}";
  const size_t start = at + marker.size();
  size_t end = start;
  int depth = 0;
  for (; end < text.size(); ++end) {
    if (text[end] == '[') ++depth;
    if (text[end] == ']') --depth;
    if (depth == 0 && (text[end] == ',' || text[end] == '}')) break;
  }
  return text.substr(0, start) + raw + text.substr(end);
}

NextViTConfig config_from_text(const std::string& text) {
  return NextViTConfig::from_json(parse_json_text(text, "test.json"), "test.json");
}

NextViTConfig small_test_config() {
  return config_from_text(R"({"name": "t", "stem_chs": [8, 8, 16],
    "stage_out_channels": [[16], [64]], "stage_block_types": [["NCB"], ["NTB"]],
    "strides": [1, 2], "sr_ratios": [1, 1], "head_dim": 16, "num_classes": 2})");
}

}  // namespace

// Before: shape_numel and the config multiplied without checks; info reported 4.6 T parameters.
TEST_CASE("robustness: a width of 2^62+1 is refused, sizes never overflow", "[robustness]") {
  REQUIRE_THROWS_WITH(config_from_text(tiny_config_with("stage_out_channels",
                                                        "[[4611686018427387905], [16, 64], "
                                                        "[16,16,16,16,64], [48,64]]")),
                      Catch::Contains("stage_out_channels") && Catch::Contains("[1, 65536]"));
  NextViTConfig c = NextViTConfig::fmnist();
  c.stage_channels[3][1] = (int64_t(1) << 62) + 16;
  REQUIRE_THROWS_WITH(c.validate(), Catch::Contains("channels"));
  REQUIRE_THROWS_WITH(shape_numel({int64_t(1) << 62, 4}), Catch::Contains("overflows"));
  REQUIRE_THROWS_WITH(Tensor::empty({0, int64_t(1) << 62, int64_t(1) << 62}),
                      Catch::Contains("overflows"));
  REQUIRE_THROWS_WITH(Tensor::empty({int64_t(1) << 61, 8}), Catch::Contains("overflows"));
}

// Before: --num-classes was assigned unchecked; a huge head was allocated.
TEST_CASE("robustness: num_classes out of range is refused before building", "[robustness]") {
  NextViTConfig c = NextViTConfig::fmnist();
  c.num_classes = int64_t(1) << 40;
  REQUIRE_THROWS_WITH(c.validate(), Catch::Contains("num_classes must be in [1, 16777216]"));
  REQUIRE_THROWS_WITH(NextViT(c), Catch::Contains("num_classes"));
}

// Before: 1e300 went through an undefined float-to-int64 cast, 3.7 became 3.
TEST_CASE("robustness: integer fields must be integers", "[robustness]") {
  REQUIRE_THROWS_WITH(
      config_from_text(tiny_config_with("head_dim", "1e300")),
      Catch::Contains("\"head_dim\" must be an integer") && Catch::Contains("test.json"));
  REQUIRE_THROWS_WITH(config_from_text(tiny_config_with("num_classes", "3.7")),
                      Catch::Contains("\"num_classes\" must be an integer"));
  REQUIRE_THROWS_WITH(config_from_text(tiny_config_with("num_classes", "18446744073709551615")),
                      Catch::Contains("\"num_classes\""));
  REQUIRE(config_from_text(tiny_config_with("num_classes", "7.0")).num_classes == 7);
  REQUIRE_THROWS_WITH(config_from_text(tiny_config_with("strides", "[1, 2, 2, 3]")),
                      Catch::Contains("\"strides\"[3]"));
  REQUIRE_THROWS_WITH(config_from_text(tiny_config_with("num_clases", "10")),
                      Catch::Contains("unknown key \"num_clases\""));
  REQUIRE_THROWS_WITH(config_from_text(tiny_config_with("stem_chs", "[8, 8]")),
                      Catch::Contains("stem_chs"));
}

// Before: `in >> j` stopped after the first value and ignored the rest of the file.
TEST_CASE("robustness: trailing garbage after a configuration is refused", "[robustness]") {
  TempDir dir;
  std::ifstream in(std::string(NEXTVIT_TEST_DATA_DIR) + "/nextvit_tiny_config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_text(dir.file("ok.json"), text + "\n  \n");
  REQUIRE(NextViTConfig::from_name(dir.file("ok.json")).name == "nextvit_tiny");
  write_text(dir.file("bad.json"), text + "\n{\"num_classes\": 3}");
  REQUIRE_THROWS_WITH(NextViTConfig::from_name(dir.file("bad.json")),
                      Catch::Contains("bad.json") && Catch::Contains("not valid JSON"));
}

// Before: ratios were never checked; 1e300 overflowed a cast, negatives were accepted.
TEST_CASE("robustness: MLP ratios must be finite and in range", "[robustness]") {
  for (const char* bad : {"1e300", "-2", "0", "65"}) {
    INFO(bad);
    REQUIRE_THROWS_WITH(config_from_text(tiny_config_with("ncb_mlp_ratio", bad)),
                        Catch::Contains("\"ncb_mlp_ratio\""));
    REQUIRE_THROWS_WITH(config_from_text(tiny_config_with("ntb_mlp_ratio", bad)),
                        Catch::Contains("\"ntb_mlp_ratio\""));
  }
  NextViTConfig c = NextViTConfig::fmnist();
  c.ncb_mlp_ratio = std::numeric_limits<double>::infinity();
  REQUIRE_THROWS_WITH(c.validate(), Catch::Contains("MLP ratios"));
}

// Before: a megabyte of '[' overflowed the stack (SIGSEGV) in forward --weights and eval.
TEST_CASE("robustness: deeply nested JSON is refused in headers and checkpoints", "[robustness]") {
  const std::string deep(1 << 20, '[');
  std::string file(8, '\0');
  uint64_t n = deep.size();
  for (int i = 0; i < 8; ++i) file[i] = char((n >> (8 * i)) & 0xff);
  REQUIRE_THROWS_WITH(parse_safetensors(file + deep, "deep.safetensors"),
                      Catch::Contains("deep.safetensors") && Catch::Contains("nested"));

  TempDir dir;
  write_safetensors(dir.file("checkpoint.safetensors"), {{"x", Tensor::zeros({1})}},
                    {{"nextvit", deep}});
  REQUIRE_THROWS_WITH(read_checkpoint_info(dir.path.string()), Catch::Contains("nested"));
  // Strings holding brackets are not nesting.
  REQUIRE(parse_json_text("{\"a\": \"" + std::string(1000, '[') + "\"}", "s").is_object());
}

// Before: ordered_json inserted keys by linear search: 100,000 tensors took 29 s.
TEST_CASE("robustness: a header with 100,000 tensors parses in about a second", "[robustness]") {
  const int count = 100000;
  std::string header = "{";
  for (int i = 0; i < count; ++i) {
    header += fmt::format("{}\"t{}\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[{},{}]}}",
                          i ? "," : "", i, 4 * i, 4 * i + 4);
  }
  header += "}";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  file += header + std::string(size_t(4) * count, '\0');
  // Processor time, not wall time: other work on a shared machine does not inflate it, so the
  // bound guards the complexity (quadratic took 29 s) without depending on the machine's load.
  const std::clock_t t0 = std::clock();
  SafeTensors f = parse_safetensors(file, "many");
  const double s = double(std::clock() - t0) / CLOCKS_PER_SEC;
  REQUIRE(f.size() == size_t(count));
  REQUIRE(f.tensors()[12345].first == "t12345");  // file order, from the offsets
  REQUIRE(s < 10.0);  // about 0.5 s in Release, a few under ASan; 29 s before
}

// Before: a 52-byte BMP claiming 41228x12106 decoded as a 1.5 GB black image.
TEST_CASE("robustness: image dimensions are capped before decoding", "[robustness]") {
  std::vector<uint8_t> lying = bmp(41228, 12106, 0);
  lying.resize(52);
  data::Image img;
  std::string reason;
  REQUIRE_FALSE(data::decode_image_bytes(lying, img, reason));
  REQUIRE(img.pixels.empty());
  // Within the pixel limit but truncated: refused too, no black filling.
  REQUIRE_FALSE(data::decode_image_bytes(bmp(100, 100, 600), img, reason));
  REQUIRE_THAT(reason, Catch::Contains("BMP truncated"));
  REQUIRE(data::decode_image_bytes(complete_bmp(100, 100, 7), img, reason));
  REQUIRE(img.height == 100);

  // A PNG header claiming 20000x20000 (a 389 KB file decoded to 3.1 GB before): refused from
  // its IHDR, before any pixel is allocated.
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', 13, 10, 26, 10, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (uint32_t v : {20000u, 20000u}) {
    for (int i = 3; i >= 0; --i) png.push_back(uint8_t(v >> (8 * i)));
  }
  for (uint8_t b : {8, 0, 0, 0, 0}) png.push_back(b);  // 8-bit gray
  const uint32_t crc = data::crc32(png.data() + 12, 17);
  for (int i = 3; i >= 0; --i) png.push_back(uint8_t(crc >> (8 * i)));
  REQUIRE_FALSE(data::decode_image_bytes(png, img, reason));
  REQUIRE_THAT(reason,
               Catch::Contains("400000000 pixels") && Catch::Contains("--max-image-pixels"));

  TempDir dir;
  for (const char* cls : {"a", "b"}) fs::create_directories(dir.path / cls);
  write_bytes(dir.file("a/huge.png"), png);
  write_bytes(dir.file("a/ok.bmp"), complete_bmp(4, 4, 1));
  write_bytes(dir.file("b/ok.bmp"), complete_bmp(4, 4, 2));
  data::ImageFolder folder(dir.path.string());
  REQUIRE(folder.size() == 2);
  REQUIRE(folder.skipped().size() == 1);
  REQUIRE_THAT(folder.skipped()[0], Catch::Contains("huge.png"));

  // info --img 1e9 1e9 overflowed the MAC count.
  REQUIRE_THROWS_WITH(NextViTConfig::small().validate_input(1000000000, 1000000000),
                      Catch::Contains("larger than 32768"));
}

// Found by fuzz_image under UBSan: a PNG header stating 0xFFFFFFFF x 0xFFFFFF02 overflowed the
// int64 pixel product before the limit was checked.
TEST_CASE("robustness: PNG header sides above 2^31 - 1 are refused without overflow",
          "[robustness]") {
  std::vector<uint8_t> png = {0x89, 'P',  'N',  'G',  13,  10,  26,   10,   0,    0,
                              0,    13,   'I',  'H',  'D', 'R', 0xff, 0xff, 0xff, 0xff,
                              0xff, 0xff, 0xff, 0x02, 8,   2,   0,    0,    0};
  int w = 0, h = 0;
  std::string reason;
  REQUIRE_FALSE(data::check_image_bytes(png.data(), png.size(), true, 1 << 20, w, h, reason));
  REQUIRE_THAT(reason, Catch::Contains("2^31 - 1"));
  png[16] = 0x7f;  // 2147483647 x 4294967042: the height alone is still out of range
  REQUIRE_FALSE(data::check_image_bytes(png.data(), png.size(), true, 1 << 20, w, h, reason));
  REQUIRE_THAT(reason, Catch::Contains("2^31 - 1"));
  png[20] = 0x7f;  // both sides legal, product 2^62 - 2^32 + 1: the pixel limit speaks
  REQUIRE_FALSE(data::check_image_bytes(png.data(), png.size(), true, 1 << 20, w, h, reason));
  REQUIRE_THAT(reason, Catch::Contains("--max-image-pixels"));
}

// Before: stb_image 2.27 wrote out of bounds inside stbi_info (found under ASan by the fuzzer).
TEST_CASE("robustness: JPEG Huffman tables with more than 256 codes are refused", "[robustness]") {
  std::vector<uint8_t> jpg = {0xFF, 0xD8, 0xFF, 0xC4};
  const uint32_t len = 2 + 17 + 16 * 255;
  jpg.push_back(uint8_t(len >> 8));
  jpg.push_back(uint8_t(len & 0xff));
  jpg.push_back(0x00);                              // DC table 0
  for (int i = 0; i < 16; ++i) jpg.push_back(255);  // 4080 codes
  jpg.resize(jpg.size() + 16 * 255, 0x11);
  jpg.insert(jpg.end(), {0xFF, 0xD9});
  std::string reason;
  REQUIRE_FALSE(data::jpeg_huffman_tables_ok(jpg.data(), jpg.size(), reason));
  REQUIRE_THAT(reason, Catch::Contains("4080 codes"));
  int w, h;
  REQUIRE_FALSE(data::check_image_bytes(jpg.data(), jpg.size(), true, 1 << 20, w, h, reason));
  data::Image img;
  REQUIRE_FALSE(data::decode_image_bytes(jpg, img, reason));
  // Found by fuzz_image: stb skips 0xFF fill bytes before the SOI marker, so must the check.
  std::vector<uint8_t> padded(100, 0xFF);
  for (size_t i = 1; i < jpg.size(); ++i) padded.push_back(jpg[i]);
  REQUIRE_FALSE(data::jpeg_huffman_tables_ok(padded.data(), padded.size(), reason));
  REQUIRE_FALSE(data::decode_image_bytes(padded, img, reason));
  // 257 codes overflow stb's 257-entry size table (the first fuzz finding): refused too.
  std::vector<uint8_t> j257 = {0xFF, 0xD8, 0xFF, 0xC4, 0, 0, 0x00};
  j257[4] = uint8_t((2 + 17 + 257) >> 8);
  j257[5] = uint8_t((2 + 17 + 257) & 0xff);
  for (int i = 0; i < 16; ++i) j257.push_back(i == 15 ? 17 : 16);  // 15 * 16 + 17 = 257
  j257.resize(j257.size() + 257, 0x22);
  REQUIRE_FALSE(data::jpeg_huffman_tables_ok(j257.data(), j257.size(), reason));
  REQUIRE_THAT(reason, Catch::Contains("257 codes"));
}

// Found by fuzz_image under UBSan: stb decoded a scan with Huffman tables no DHT segment had
// defined (a symbol index of 18494 into a 256-entry table). The markers of such files, built
// here: a scan may only use tables defined before it, and in a progressive frame only those it
// decodes with (a DC refinement reads raw bits, an AC scan no DC table).
TEST_CASE("robustness: a JPEG scan whose Huffman tables were never defined is refused",
          "[robustness]") {
  auto segment = [](std::vector<uint8_t>& j, uint8_t marker, std::vector<uint8_t> body) {
    j.insert(j.end(), {0xFF, marker, uint8_t((body.size() + 2) >> 8), uint8_t(body.size() + 2)});
    j.insert(j.end(), body.begin(), body.end());
  };
  auto dht = [](uint8_t class_id) {  // one table: 1 code of length 1, symbol 0
    std::vector<uint8_t> b = {class_id, 1};
    b.resize(17, 0);
    b.push_back(0);
    return b;
  };
  // sof: 0xC0 (baseline) or 0xC2 (progressive), 8 x 8, one component; then the DHTs; then one
  // scan of component 1 with tables `tables` (DC << 4 | AC) and Ss, Se, Ah / Al.
  auto jpeg = [&](uint8_t sof, std::vector<uint8_t> dhts, uint8_t tables, uint8_t ss, uint8_t se,
                  uint8_t a) {
    std::vector<uint8_t> j = {0xFF, 0xD8};
    segment(j, sof, {8, 0, 8, 0, 8, 1, 1, 0x11, 0});
    for (uint8_t t : dhts) segment(j, 0xC4, dht(t));
    segment(j, 0xDA, {1, 1, tables, ss, se, a});
    j.insert(j.end(), {0x00, 0x00, 0xFF, 0xD9});
    return j;
  };
  std::string reason;
  const auto ok = [&](const std::vector<uint8_t>& j) {
    reason.clear();
    return data::jpeg_huffman_tables_ok(j.data(), j.size(), reason);
  };
  // Baseline: both tables of the component, defined before the scan.
  REQUIRE(ok(jpeg(0xC0, {0x00, 0x10}, 0x00, 0, 63, 0)));
  REQUIRE_FALSE(ok(jpeg(0xC0, {0x00, 0x11}, 0x00, 0, 63, 0)));  // AC 0 missing (the fuzz case)
  REQUIRE_THAT(reason, Catch::Contains("AC Huffman table 0"));
  REQUIRE_FALSE(ok(jpeg(0xC0, {0x00, 0x11}, 0x11, 0, 63, 0)));  // DC 1 missing
  REQUIRE_THAT(reason, Catch::Contains("DC Huffman table 1"));
  // Defined only after the scan: too late.
  std::vector<uint8_t> late = jpeg(0xC0, {0x00}, 0x00, 0, 63, 0);
  late.resize(late.size() - 2);
  segment(late, 0xC4, dht(0x10));
  late.insert(late.end(), {0xFF, 0xD9});
  REQUIRE_FALSE(ok(late));
  // Progressive: a first DC scan needs only its DC table, a DC refinement none, an AC scan only
  // its AC table.
  REQUIRE(ok(jpeg(0xC2, {0x00}, 0x03, 0, 0, 0x00)));
  REQUIRE_FALSE(ok(jpeg(0xC2, {0x10}, 0x00, 0, 0, 0x00)));
  REQUIRE(ok(jpeg(0xC2, {}, 0x22, 0, 0, 0x10)));
  REQUIRE(ok(jpeg(0xC2, {0x12}, 0x32, 1, 5, 0x00)));
  REQUIRE_FALSE(ok(jpeg(0xC2, {0x02}, 0x22, 1, 5, 0x00)));
  REQUIRE_THAT(reason, Catch::Contains("AC Huffman table 2"));
  // And the whole decode refuses the fuzz case's shape before stb reads it.
  data::Image img;
  REQUIRE_FALSE(data::decode_image_bytes(jpeg(0xC0, {0x00, 0x11}, 0x00, 0, 63, 0), img, reason));
  REQUIRE_THAT(reason, Catch::Contains("Huffman table"));
}

// Found by fuzz_image: stb grew its IDAT buffer to a chunk's claimed length (108 bytes -> 2 GB).
TEST_CASE("robustness: PNG chunks must fit in the file", "[robustness]") {
  const std::vector<uint8_t> oom = {
      0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
      0x44, 0x52, 0x00, 0x00, 0x41, 0x06, 0x00, 0x00, 0x00, 0x04, 0x08, 0x02, 0x00, 0x00,
      0x00, 0x22, 0x66, 0xd9, 0x14, 0x00, 0x00, 0x00, 0x17, 0x49, 0x44, 0x41, 0x54, 0x78,
      0xda, 0x17, 0x49, 0x44, 0x41, 0x44, 0x52, 0x00, 0x00, 0x41, 0x06, 0x00, 0x00, 0x00,
      0x04, 0x08, 0x02, 0x00, 0x00, 0x00, 0x22, 0x66, 0xd9, 0x14, 0x00, 0x54, 0x78, 0x00,
      0x00, 0x17, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0x60, 0x67, 0x10,
      0x61, 0x40, 0x08, 0x38, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
  std::string reason;
  REQUIRE_FALSE(data::png_chunks_ok(oom.data(), oom.size(), true, reason));
  REQUIRE_THAT(reason, Catch::Contains("past the end"));
  data::Image img;
  REQUIRE_FALSE(data::decode_image_bytes(oom, img, reason));
  // Found by fuzz_image: an empty first IDAT made stb memcpy into a null pointer.
  const std::vector<uint8_t> empty_idat = {
      0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
      0x44, 0x52, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x08, 0x02, 0x00, 0x00,
      0x00, 0x22, 0x66, 0xd9, 0x14, 0x00, 0x00, 0x00, 0x17, 0x78, 0xda, 0x63, 0x64, 0x60,
      0x60, 0x67, 0x10, 0x61, 0x40, 0x46, 0x10, 0x61, 0x40, 0x46, 0x2c, 0x5c, 0x0c, 0xe8,
      0x80, 0x38, 0x21, 0x00, 0x22, 0x19, 0x00, 0x97, 0x09, 0x5d, 0x08, 0x38, 0x00, 0x00,
      0x00, 0x00, 0x49, 0x44, 0x41, 0x54, 0xae, 0x42, 0x60, 0x82};
  REQUIRE_FALSE(data::png_chunks_ok(empty_idat.data(), empty_idat.size(), true, reason));
  REQUIRE_THAT(reason, Catch::Contains("empty first IDAT"));
  // The committed test images still decode.
  std::ifstream in(std::string(NEXTVIT_TEST_DATA_DIR) + "/images/cat/a.png", std::ios::binary);
  const std::vector<uint8_t> ok((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  REQUIRE(data::decode_image_bytes(ok, img, reason));
}

// Before: the reader pre-allocated the trailer's size (1 GiB for 18 bytes) and stb grew the
// buffer without limit for a stream longer than announced.
TEST_CASE("robustness: gzip output is bounded by its trailer and a limit", "[robustness]") {
  auto gz = [](const std::vector<uint8_t>& deflate, uint32_t isize, uint32_t crc) {
    std::vector<uint8_t> b = {0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3};
    for (uint8_t d : deflate) b.push_back(d);  // (insert() trips a GCC 12 -Warray-bounds)
    for (uint32_t v : {crc, isize}) {
      for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
    }
    return b;
  };
  const std::vector<uint8_t> empty_stream = {0x03, 0x00};  // a final, empty fixed block
  const auto tiny = gz(empty_stream, 1u << 30, 0);
  REQUIRE(tiny.size() == 20);
  REQUIRE_THROWS_WITH(data::gunzip(tiny.data(), tiny.size(), "tiny.gz"),
                      Catch::Contains("tiny.gz") && Catch::Contains("compressed bytes can hold"));
  // A stored block of 200 bytes under a trailer announcing 100: refused, not grown.
  std::vector<uint8_t> stored = {0x01, 200, 0, uint8_t(~200), 0xFF};
  stored.resize(stored.size() + 200, 'x');
  const auto liar = gz(stored, 100, 0);
  REQUIRE_THROWS_WITH(data::gunzip(liar.data(), liar.size(), "liar.gz"),
                      Catch::Contains("longer than the 100 bytes"));
  const auto big = gz(stored, 200, 0);
  REQUIRE_THROWS_WITH(data::gunzip(big.data(), big.size(), "big.gz", 128),
                      Catch::Contains("128-byte limit"));
  std::vector<uint8_t> x(200, 'x');
  const auto good = gz(stored, 200, data::crc32(x.data(), x.size()));
  REQUIRE(data::gunzip(good.data(), good.size(), "good.gz") == x);
}

// Before: "stoul" escaped from a timm name with a huge index; checkpoint JSON errors came
// without the file name.
TEST_CASE("robustness: errors name the file instead of escaping as library exceptions",
          "[robustness]") {
  NextViT model(small_test_config());
  NamedTensors bad = {{"stages.99999999999999999999.blocks.0.norm.weight", Tensor::zeros({1})}};
  REQUIRE_THROWS_AS(load_state_dict(model, bad), Error);
  REQUIRE_THROWS_WITH(load_state_dict(model, bad), Catch::Contains("99999999999999999999"));

  TempDir dir;
  nlohmann::json meta = {{"format", "nextvit-checkpoint-1"},
                         {"epoch", 1e300},
                         {"step", 1},
                         {"loader", {{"epoch", 0}, {"batch", 0}}},
                         {"config", nlohmann::json::object()},
                         {"options", nlohmann::json::object()}};
  write_safetensors(dir.file("checkpoint.safetensors"), {{"x", Tensor::zeros({1})}},
                    {{"nextvit", meta.dump()}});
  REQUIRE_THROWS_WITH(read_checkpoint_info(dir.path.string()),
                      Catch::Contains("checkpoint.safetensors") && Catch::Contains("\"epoch\""));
  meta["epoch"] = 2;
  meta.erase("loader");
  write_safetensors(dir.file("checkpoint.safetensors"), {{"x", Tensor::zeros({1})}},
                    {{"nextvit", meta.dump()}});
  REQUIRE_THROWS_WITH(read_checkpoint_info(dir.path.string()),
                      Catch::Contains("checkpoint.safetensors") && Catch::Contains("\"loader\""));
  write_safetensors(dir.file("checkpoint.safetensors"), {{"x", Tensor::zeros({1})}},
                    {{"nextvit", "{\"format\": 1"}});
  REQUIRE_THROWS_WITH(read_checkpoint_info(dir.path.string()),
                      Catch::Contains("checkpoint.safetensors") && Catch::Contains("JSON"));
}

// Before: a missing tensor of a timm-layout file was named by its official key.
TEST_CASE("robustness: weight errors use the file's own layout names", "[robustness]") {
  NextViT model(small_test_config());
  NamedTensors timm;
  for (const auto& [name, t] : model.state_dict()) {
    timm.emplace_back(official_to_timm(name, model.config()), t);
  }
  const std::string dropped = "stages.1.blocks.0.mlp.fc1.weight";
  const std::string official = timm_to_official(dropped, model.config());
  REQUIRE(official == "features.1.mlp.conv1.weight");
  NamedTensors missing_one;
  for (const auto& nt : timm) {
    if (nt.first != dropped) missing_one.push_back(nt);
  }
  REQUIRE_THROWS_WITH(load_state_dict(model, missing_one),
                      Catch::Contains(dropped) && !Catch::Contains(official));
  NamedTensors wrong = timm;
  for (auto& nt : wrong) {
    if (nt.first == dropped) nt.second = Tensor::zeros({3});
  }
  REQUIRE_THROWS_WITH(load_state_dict(model, wrong),
                      Catch::Contains(dropped) && !Catch::Contains(official));
  // An integer-typed parameter is refused before anything changes.
  NamedTensors ints = model.state_dict();
  for (auto& nt : ints) {
    if (nt.first == "proj_head.0.bias") nt.second = Tensor::from_vector_i64({1, 2}, {2});
  }
  REQUIRE_THROWS_WITH(load_state_dict(model, ints), Catch::Contains("proj_head.0.bias"));
}

// Before: --img 100000 ended in std::bad_alloc after 87 s and 9.8 GB.
TEST_CASE("robustness: models that cannot fit in memory are refused up front", "[robustness]") {
  const NextViTConfig s = NextViTConfig::small();
  REQUIRE_THROWS_WITH(s.validate_input(100000, 100000), Catch::Contains("larger than 32768"));
  REQUIRE_THROWS_WITH(check_memory_fits(s, 128, 30000, 30000, true, "train"),
                      Catch::Contains("train: nextvit_small") && Catch::Contains("needs at least"));
  REQUIRE_NOTHROW(check_memory_fits(NextViTConfig::fmnist(), 128, 28, 28, true, "train"));
  // The estimate is a lower bound of the real parameter count (31.76 M for Next-ViT-S).
  const MemoryEstimate e = estimate_memory(s, 0, 0, 0, false);
  REQUIRE(e.parameters > 25e6);
  REQUIRE(e.parameters < 31.76e6);
  NextViTConfig wide = NextViTConfig::fmnist();
  for (auto& stage : wide.stage_channels) {
    for (auto& ch : stage) ch = 65536 - 65536 % 16;
  }
  REQUIRE_THROWS_WITH(NextViT(wide), Catch::Contains("needs at least"));
  REQUIRE_THROWS_WITH(Tensor::empty({int64_t(1) << 50}), Catch::Contains("cannot allocate"));
}

namespace {

// ROOT/train and ROOT/val with the given class folders, each holding `per_class` small BMPs.
void make_image_data(const fs::path& root, const std::vector<std::string>& classes, int per_class) {
  for (const char* split : {"train", "val"}) {
    for (size_t c = 0; c < classes.size(); ++c) {
      const fs::path dir = root / split / classes[c];
      fs::create_directories(dir);
      for (int i = 0; i < per_class; ++i) {
        write_bytes((dir / fmt::format("{}.bmp", i)).string(),
                    complete_bmp(8, 8, uint8_t(40 * c + 3 * i)));
      }
    }
  }
}

TrainOptions tiny_run(const fs::path& root, const fs::path& config, const fs::path& out) {
  TrainOptions o;
  o.model = config.string();
  o.data = root.string();
  o.out = out.string();
  o.img = 16;
  o.epochs = 1;
  o.batch = 2;
  o.workers = 0;
  o.quiet = true;
  o.flip = false;
  return o;
}

void write_tiny_config(const std::string& path) {
  write_text(path, small_test_config().to_json().dump());
}

}  // namespace

// Before: one class trained to "100%" with no warning.
TEST_CASE("robustness: data sets that cannot train are refused at start", "[robustness]") {
  TempDir dir;
  write_tiny_config(dir.file("model.json"));
  make_image_data(dir.path / "one", {"only"}, 3);
  REQUIRE_THROWS_WITH(train(tiny_run(dir.path / "one", dir.file("model.json"), dir.path / "o1")),
                      Catch::Contains("1 class folder") && Catch::Contains("at least 2"));
  make_image_data(dir.path / "two", {"a", "b"}, 2);
  fs::rename(dir.path / "two" / "val" / "b", dir.path / "two" / "val" / "c");
  REQUIRE_THROWS_WITH(train(tiny_run(dir.path / "two", dir.file("model.json"), dir.path / "o2")),
                      Catch::Contains("differ"));
  make_image_data(dir.path / "empty", {"a", "b"}, 2);
  fs::create_directories(dir.path / "empty" / "train" / "c");
  REQUIRE_THROWS_WITH(train(tiny_run(dir.path / "empty", dir.file("model.json"), dir.path / "o3")),
                      Catch::Contains("class 'c'"));
  // An output folder that cannot be created is refused before training.
  write_text(dir.file("a_file"), "x");
  make_image_data(dir.path / "ok", {"a", "b"}, 2);
  REQUIRE_THROWS_WITH(
      train(tiny_run(dir.path / "ok", dir.file("model.json"), dir.path / "a_file" / "out")),
      Catch::Contains("--out"));
}

// Before: a sample that failed to decode was replaced silently after the first warning.
TEST_CASE("robustness: replaced samples are counted", "[robustness]") {
  TempDir dir;
  for (const char* cls : {"a", "b"}) fs::create_directories(dir.path / cls);
  write_bytes(dir.file("a/0.bmp"), complete_bmp(4, 4, 1));
  write_text(dir.file("a/1.png"), "not a png at all");
  write_bytes(dir.file("b/0.bmp"), complete_bmp(4, 4, 2));
  data::ImageFolder folder(dir.path.string(), /*check_headers=*/false);
  data::Image img;
  REQUIRE(folder.get(1, img) == 1);  // a/1.png fails: b/0.bmp comes in its place
  REQUIRE(folder.get(1, img) == 1);
  REQUIRE(folder.take_replaced_count() == 2);
  REQUIRE(folder.take_replaced_count() == 0);
}

// Before: Ctrl-C killed training and lost everything since the last epoch.
TEST_CASE("robustness: SIGINT during training writes a checkpoint and stops", "[robustness]") {
  TempDir dir;
  write_tiny_config(dir.file("model.json"));
  make_image_data(dir.path / "data", {"a", "b"}, 4);
  TrainOptions o = tiny_run(dir.path / "data", dir.file("model.json"), dir.path / "out");
  o.epochs = 100000;  // runs until interrupted
  TrainResult result;
  std::thread t([&] { result = train(o); });
  while (!InterruptGuard::active()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  kill(getpid(), SIGINT);
  t.join();
  REQUIRE(result.interrupted);
  REQUIRE(result.signal == SIGINT);
  REQUIRE(result.steps > 0);
  REQUIRE(checkpoint_exists(o.out));
  REQUIRE(read_checkpoint_info(o.out).step == result.steps);
  REQUIRE_FALSE(InterruptGuard::active());
}

// Before: untested; a failed write must leave the previous checkpoint readable.
TEST_CASE("robustness: a full disk leaves the previous checkpoint intact", "[robustness]") {
  TempDir dir;
  NextViT model(small_test_config());
  AdamW opt(weight_decay_groups(model, 0.05));
  CheckpointInfo info;
  info.config = model.config().to_json();
  info.options = nlohmann::json::object();
  info.step = 7;
  save_checkpoint(dir.path.string(), model, opt, nullptr, info);
  const auto before = fs::file_size(dir.path / "checkpoint.safetensors");

  // RLIMIT_FSIZE stands in for a full disk: writes past 4 KB fail with EFBIG (SIGXFSZ ignored).
  struct rlimit old_limit;
  getrlimit(RLIMIT_FSIZE, &old_limit);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 4096;
  setrlimit(RLIMIT_FSIZE, &small);
  info.step = 8;
  bool threw = false;
  try {
    save_checkpoint(dir.path.string(), model, opt, nullptr, info);
  } catch (const Error&) {
    threw = true;
  }
  setrlimit(RLIMIT_FSIZE, &old_limit);
  signal(SIGXFSZ, old_handler);
  REQUIRE(threw);
  REQUIRE(fs::file_size(dir.path / "checkpoint.safetensors") == before);
  REQUIRE(read_checkpoint_info(dir.path.string()).step == 7);
  REQUIRE_FALSE(fs::exists(dir.path / "checkpoint.safetensors.tmp"));
}

// JPEG and PNG go to libjpeg-turbo and libpng when the build enables them
// (train/data/system_decoders.cmake); stb_image otherwise. Both must give the same images, and
// the libraries must refuse what stb would silently fill with grey.
TEST_CASE("robustness: JPEG and PNG decode the same with either decoder", "[robustness]") {
  INFO("system decoders " << (data::system_image_decoders_enabled() ? "on" : "off"));
  auto read = [](const std::string& name) {
    std::ifstream in(std::string(NEXTVIT_TEST_DATA_DIR) + "/images/" + name, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  };
  data::Image img;
  std::string reason;
  REQUIRE(data::decode_image_bytes(read("cat/a.png"), img, reason));
  REQUIRE(img.height == 4);
  REQUIRE(img.width == 6);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 6; ++x) {
      REQUIRE(int(img.at(y, x, 0)) == 10 * y);
      REQUIRE(int(img.at(y, x, 1)) == 20 * x);
      REQUIRE(int(img.at(y, x, 2)) == 7);
    }
  }
  const std::vector<uint8_t> jpg = read("dog/d.jpg");
  REQUIRE(data::decode_image_bytes(jpg, img, reason));
  REQUIRE(img.height == 8);
  for (uint8_t v : img.pixels) REQUIRE(std::abs(int(v) - 128) <= 2);
  // Pixel limit on the system path too (the guard's stbi_info check comes first either way).
  REQUIRE_FALSE(data::decode_image_bytes(jpg, img, reason, 63));
  REQUIRE_THAT(reason, Catch::Contains("--max-image-pixels"));
  if (data::system_image_decoders_enabled()) {
    const std::vector<uint8_t> cut(jpg.begin(), jpg.begin() + std::ptrdiff_t(jpg.size() - 40));
    REQUIRE_FALSE(data::decode_image_bytes(cut, img, reason));
    REQUIRE_THAT(reason, Catch::Contains("libjpeg"));
  }
}
