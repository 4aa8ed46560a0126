// train/data/: IDX and gzip reading, Fashion-MNIST, the image folder, transforms and the loader.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>

#include "test_util.h"
#include "train/data/fashion_mnist.h"
#include "train/data/gzip.h"
#include "train/data/idx.h"
#include "train/data/image_folder.h"
#include "train/data/loader.h"
#include "train/data/resize.h"
#include "train/data/transforms.h"

using namespace nextvit;
using namespace nextvit::data;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
using nextvit::test::TempDir;

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(f.good());
}

// An IDX file of unsigned bytes: 00 00 08 ndims, big-endian dims, then the data.
std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                               uint8_t type = 0x08) {
  std::vector<uint8_t> b = {0, 0, type, uint8_t(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(d >> s));
  }
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// Redirects std::cerr into a string for the lifetime of the object.
struct CaptureStderr {
  std::stringstream text;
  std::streambuf* old;
  CaptureStderr() : old(std::cerr.rdbuf(text.rdbuf())) {}
  ~CaptureStderr() { std::cerr.rdbuf(old); }
};

Image make_image(int h, int w, int c, const std::function<int(int, int, int)>& value) {
  Image img(h, w, c);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int k = 0; k < c; ++k) img.at(y, x, k) = uint8_t(value(y, x, k));
    }
  }
  return img;
}

// A dataset computed on the fly: sample i is an h x w RGB image whose bytes encode i, label
// i % 5. With `ragged`, odd samples are one column wider (to provoke a batching error).
class SyntheticDataset final : public Dataset {
 public:
  SyntheticDataset(int64_t n, int h, int w, bool ragged = false, int sleep_us = 0)
      : n_(n), h_(h), w_(w), ragged_(ragged), sleep_us_(sleep_us) {}
  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return 5; }
  const std::vector<std::string>& class_names() const override { return names_; }
  int64_t get(int64_t i, Image& out) const override {
    if (sleep_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
    const int w = w_ + (ragged_ && i % 2 == 1 ? 1 : 0);
    out =
        make_image(h_, w, 3, [&](int y, int x, int c) { return int(i * 7 + y * w + x + c) % 256; });
    return i % 5;
  }
  std::string describe() const override { return fmt::format("synthetic ({} samples)", n_); }

 private:
  int64_t n_;
  int h_, w_;
  bool ragged_;
  int sleep_us_;
  std::vector<std::string> names_ = {"a", "b", "c", "d", "e"};
};

}  // namespace

// ---- IDX and gzip ---------------------------------------------------------------------------

TEST_CASE("data: IDX files parse and malformed ones fail naming the path and the problem",
          "[data]") {
  TempDir dir;
  std::vector<uint8_t> values(2 * 3 * 4);
  std::iota(values.begin(), values.end(), uint8_t{100});
  const std::string good = dir.file("good.idx");
  write_bytes(good, idx_bytes({2, 3, 4}, values));
  IdxArray a = read_idx(good);
  REQUIRE(a.dims == Shape{2, 3, 4});
  REQUIRE(a.data == values);

  auto fails_with = [&](const std::vector<uint8_t>& bytes, const std::string& expected) {
    const std::string path = dir.file("bad.idx");
    write_bytes(path, bytes);
    REQUIRE_THROWS_WITH(read_idx(path), Catch::Contains(path) && Catch::Contains(expected));
  };
  std::vector<uint8_t> wrong_magic = idx_bytes({2, 3, 4}, values);
  wrong_magic[0] = 0x1A;
  fails_with(wrong_magic, "bad magic 1a 00 08 03");
  fails_with(idx_bytes({2, 3, 4}, values, 0x0D), "float32 (0x0d) is not supported");
  fails_with(idx_bytes({2, 3, 4}, values, 0x42), "unknown element type 0x42");
  fails_with(idx_bytes({2, 3, 5}, values),
             "truncated: dimensions (2, 3, 5) need 30 data bytes, "
             "the file has 24");
  fails_with(idx_bytes({2, 3, 3}, values), "24 bytes follow the header but dimensions (2, 3, 3)");
  std::vector<uint8_t> short_header = idx_bytes({2, 3, 4}, {});
  short_header.resize(9);
  fails_with(short_header, "truncated header: 3 dimensions need 16 bytes, the file has 9");
  fails_with({0, 0}, "too short");
  REQUIRE_THROWS_WITH(read_idx(dir.file("missing.idx")),
                      Catch::Contains("cannot open") && Catch::Contains("missing.idx"));
}

TEST_CASE("data: crc32 gives the standard check value", "[data]") {
  const std::string s = "123456789";
  REQUIRE(crc32(reinterpret_cast<const uint8_t*>(s.data()), s.size()) == 0xCBF43926u);
  // Continuing a CRC over two pieces equals the CRC of the whole.
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  REQUIRE(crc32(p + 4, 5, crc32(p, 4)) == 0xCBF43926u);
}

TEST_CASE("data: gzip files made by the gzip tool inflate and corruption is caught", "[data]") {
  TempDir dir;
  // ~200 KB of mildly compressible bytes, so the stream has several deflate blocks.
  std::vector<uint8_t> values(200 * 1024);
  Generator g(3);
  for (size_t i = 0; i < values.size(); ++i) values[i] = uint8_t(g.randint(16) * (i % 7));
  const std::string plain = dir.file("values-idx1-ubyte");
  write_bytes(plain, idx_bytes({uint32_t(values.size())}, values));
  const std::string cmd = fmt::format("gzip -9 -k -f '{}' 2>/dev/null", plain);
  if (std::system(cmd.c_str()) != 0) {
    WARN("SKIPPED: the gzip program is not available");
    return;
  }
  const std::string gz = plain + ".gz";
  IdxArray a = read_idx(gz);
  REQUIRE(a.dims == Shape{int64_t(values.size())});
  REQUIRE(a.data == values);

  // Short streams often end with a Huffman code in their very last byte, which stb's decoder
  // reads only with look-ahead (regression test: these failed with "bad huffman code").
  for (int seed = 0; seed < 8; ++seed) {
    std::vector<uint8_t> small(size_t(100 + 37 * seed));
    Generator gs{uint64_t(seed)};
    for (uint8_t& v : small) v = uint8_t(gs.randint(10));
    const std::string path = dir.file(fmt::format("small{}", seed));
    write_bytes(path, small);
    REQUIRE(std::system(fmt::format("gzip -9 -f '{}'", path).c_str()) == 0);
    INFO("seed " << seed);
    REQUIRE(read_maybe_gzip(path + ".gz") == small);
  }

  const std::vector<uint8_t> file = read_file(gz);
  const std::vector<uint8_t> expected = read_file(plain);
  REQUIRE(is_gzip(file.data(), file.size()));
  REQUIRE((file[3] & 0x08) != 0);  // gzip stored the file name (FNAME)

  SECTION("every optional header field is parsed") {
    // Rebuild the header with FEXTRA and FCOMMENT added and a header CRC (FHCRC) at the end.
    const size_t name_end = size_t(std::find(file.begin() + 10, file.end(), 0) - file.begin()) + 1;
    std::vector<uint8_t> h(file.begin(), file.begin() + 10);
    h[3] |= 0x02 | 0x04 | 0x10;
    h.insert(h.end(), {4, 0, 'a', 'b', 'c', 'd'});                        // FEXTRA
    h.insert(h.end(), file.begin() + 10, file.begin() + long(name_end));  // FNAME
    h.insert(h.end(), {'h', 'i', 0});                                     // FCOMMENT
    const uint32_t hcrc = crc32(h.data(), h.size());
    h.insert(h.end(), {uint8_t(hcrc), uint8_t(hcrc >> 8)});
    std::vector<uint8_t> full = h;
    full.insert(full.end(), file.begin() + long(name_end), file.end());
    REQUIRE(gunzip(full.data(), full.size(), "rebuilt") == expected);

    full[h.size() - 1] ^= 0xFF;
    REQUIRE_THROWS_WITH(gunzip(full.data(), full.size(), "rebuilt"),
                        Catch::Contains("header CRC16 mismatch"));
  }
  SECTION("a wrong CRC32 a wrong length and truncation are errors naming the input") {
    std::vector<uint8_t> bad = file;
    bad[bad.size() - 8] ^= 0x01;
    REQUIRE_THROWS_WITH(gunzip(bad.data(), bad.size(), gz),
                        Catch::Contains(gz) && Catch::Contains("CRC32 mismatch"));
    bad = file;
    bad[bad.size() - 4] ^= 0x01;
    REQUIRE_THROWS_WITH(gunzip(bad.data(), bad.size(), gz), Catch::Contains("the trailer says"));
    bad.assign(file.begin(), file.begin() + long(file.size() / 2));
    REQUIRE_THROWS_WITH(gunzip(bad.data(), bad.size(), gz), Catch::Contains(gz));
    bad = file;
    bad[2] = 7;
    REQUIRE_THROWS_WITH(gunzip(bad.data(), bad.size(), gz), Catch::Contains("not deflate"));
    bad = file;
    bad[3] |= 0x80;
    REQUIRE_THROWS_WITH(gunzip(bad.data(), bad.size(), gz), Catch::Contains("reserved"));
    // A truncated .gz read as an IDX file reports the gzip problem with the path.
    bad.assign(file.begin(), file.begin() + long(file.size() - 100));
    write_bytes(gz, bad);
    REQUIRE_THROWS_WITH(read_idx(gz), Catch::Contains(gz));
  }
}

// ---- Fashion-MNIST --------------------------------------------------------------------------

TEST_CASE("data: Fashion-MNIST from the Debian package has the known contents", "[data]") {
  if (!FashionMnist::available(Split::Train) || !FashionMnist::available(Split::Test)) {
    WARN("SKIPPED: Fashion-MNIST not found in " << FashionMnist::default_dir()
                                                << " (apt install dataset-fashion-mnist)");
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  FashionMnist train(Split::Train);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("loading the training split took " << seconds << " s");
  REQUIRE(train.size() == 60000);
  REQUIRE(train.height() == 28);
  REQUIRE(train.width() == 28);
  REQUIRE(train.num_classes() == 10);
  REQUIRE(train.class_names()[9] == "Ankle boot");
  // Reference values read with Python's gzip module.
  const std::vector<uint8_t> first_labels = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
  REQUIRE(std::equal(first_labels.begin(), first_labels.end(), train.labels().begin()));
  std::vector<int64_t> counts(10, 0);
  for (uint8_t l : train.labels()) ++counts[l];
  REQUIRE(counts == std::vector<int64_t>(10, 6000));
  Image img;
  REQUIRE(train.get(0, img) == 9);
  REQUIRE((img.height == 28 && img.width == 28 && img.channels == 1));
  REQUIRE(std::accumulate(img.pixels.begin(), img.pixels.end(), int64_t{0}) == 76247);
  REQUIRE(int(img.at(3, 12, 0)) == 1);
  REQUIRE(int(img.at(3, 16, 0)) == 73);
  REQUIRE(int(img.at(14, 12, 0)) == 237);
  REQUIRE(int(img.at(14, 25, 0)) == 255);
  REQUIRE(int(img.at(14, 26, 0)) == 77);
  train.get(123, img);
  REQUIRE(int(img.at(10, 10, 0)) == 255);
  REQUIRE(std::accumulate(train.pixels().begin(), train.pixels().end(), int64_t{0}) == 3431114169);
  REQUIRE_THROWS_WITH(train.get(60000, img), Catch::Contains("out of range"));

  FashionMnist test(Split::Test);
  REQUIRE(test.size() == 10000);
  const std::vector<uint8_t> first_test = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
  REQUIRE(std::equal(first_test.begin(), first_test.end(), test.labels().begin()));
  test.get(0, img);
  REQUIRE(std::accumulate(img.pixels.begin(), img.pixels.end(), int64_t{0}) == 33456);
  REQUIRE(int(img.at(14, 12, 0)) == 98);
}

TEST_CASE("data: Fashion-MNIST reads plain IDX files from NEXTVIT_FASHION_MNIST", "[data]") {
  TempDir dir;
  // A three-image stand-in with the real file names, uncompressed.
  std::vector<uint8_t> pixels(3 * 2 * 4);
  std::iota(pixels.begin(), pixels.end(), uint8_t{0});
  write_bytes(dir.file("t10k-images-idx3-ubyte"), idx_bytes({3, 2, 4}, pixels));
  write_bytes(dir.file("t10k-labels-idx1-ubyte"), idx_bytes({3}, {4, 0, 9}));
  const char* old = std::getenv("NEXTVIT_FASHION_MNIST");
  const std::string saved = old != nullptr ? old : "";
  setenv("NEXTVIT_FASHION_MNIST", dir.path.c_str(), 1);
  struct Restore {
    std::string saved;
    bool had;
    ~Restore() {
      if (had) {
        setenv("NEXTVIT_FASHION_MNIST", saved.c_str(), 1);
      } else {
        unsetenv("NEXTVIT_FASHION_MNIST");
      }
    }
  } restore{saved, old != nullptr};

  REQUIRE(FashionMnist::default_dir() == dir.path.string());
  REQUIRE(FashionMnist::available(Split::Test));
  REQUIRE_FALSE(FashionMnist::available(Split::Train));
  FashionMnist ds(Split::Test);
  REQUIRE(ds.size() == 3);
  Image img;
  REQUIRE(ds.get(2, img) == 9);
  REQUIRE((img.height == 2 && img.width == 4 && img.pixels[0] == 16 && img.pixels[7] == 23));
  REQUIRE_THROWS_WITH(FashionMnist(Split::Train), Catch::Contains("train-images-idx3-ubyte") &&
                                                      Catch::Contains("NEXTVIT_FASHION_MNIST"));

  write_bytes(dir.file("t10k-labels-idx1-ubyte"), idx_bytes({2}, {4, 0}));
  REQUIRE_THROWS_WITH(FashionMnist(Split::Test),
                      Catch::Contains("holds 3 images but") && Catch::Contains("holds 2 labels"));
  write_bytes(dir.file("t10k-labels-idx1-ubyte"), idx_bytes({3}, {4, 10, 9}));
  REQUIRE_THROWS_WITH(FashionMnist(Split::Test), Catch::Contains("label 10 of sample 1"));
}

// ---- image folder ---------------------------------------------------------------------------

TEST_CASE("data: the image folder decodes PNG BMP and JPEG and skips a corrupt file", "[data]") {
  const std::string root = std::string(NEXTVIT_TEST_DATA_DIR) + "/images";
  CaptureStderr err;
  ImageFolder ds(root);
  const std::string warnings = err.text.str();
  REQUIRE(ds.class_names() == std::vector<std::string>{"cat", "dog"});
  REQUIRE(ds.size() == 4);  // a.png b.bmp | c.png d.jpg; corrupt.png skipped, notes.txt ignored
  REQUIRE(ds.skipped().size() == 1);
  REQUIRE_THAT(ds.skipped()[0], Catch::Contains("corrupt.png"));
  REQUIRE_THAT(warnings, Catch::Contains("warning") && Catch::Contains("dog/corrupt.png"));
  REQUIRE_THAT(warnings, Catch::Contains(ds.skipped()[0]));  // the path and stb's reason

  Image img;
  REQUIRE(ds.get(0, img) == 0);  // cat/a.png: 4x6, pixel (y, x) = (10y, 20x, 7)
  REQUIRE((img.height == 4 && img.width == 6 && img.channels == 3));
  REQUIRE((img.at(2, 3, 0) == 20 && img.at(2, 3, 1) == 60 && img.at(2, 3, 2) == 7));
  REQUIRE(ds.get(1, img) == 0);  // cat/b.bmp: 5x3, pixel (y, x) = (200, 30y, 40x)
  REQUIRE((img.height == 5 && img.width == 3));
  REQUIRE((img.at(4, 2, 0) == 200 && img.at(4, 2, 1) == 120 && img.at(4, 2, 2) == 80));
  REQUIRE(ds.get(2, img) == 1);  // dog/c.png: gray 4x4, value 16 * (4y + x), made RGB
  REQUIRE((img.channels == 3 && img.at(1, 2, 0) == 96 && img.at(1, 2, 1) == 96 &&
           img.at(1, 2, 2) == 96));
  REQUIRE(ds.get(3, img) == 1);  // dog/d.jpg: 8x8 of gray 128, lossy
  REQUIRE((img.height == 8 && img.width == 8));
  for (uint8_t v : img.pixels) REQUIRE(std::abs(int(v) - 128) <= 2);
}

TEST_CASE("data: the image folder replaces an image whose body fails to decode", "[data]") {
  TempDir dir;
  const std::string src = std::string(NEXTVIT_TEST_DATA_DIR) + "/images/cat/a.png";
  fs::create_directories(dir.path / "only");
  fs::copy_file(src, dir.path / "only" / "1_good.png");
  // The first 40 bytes keep the PNG signature and IHDR (stbi_info passes) but not the pixels.
  std::vector<uint8_t> bytes = read_file(src);
  bytes.resize(40);
  write_bytes((dir.path / "only" / "0_truncated.png").string(), bytes);
  ImageFolder ds(dir.path.string());
  REQUIRE(ds.size() == 2);
  REQUIRE(ds.skipped().empty());
  CaptureStderr err;
  Image img;
  REQUIRE(ds.get(0, img) == 0);
  REQUIRE((img.height == 4 && img.width == 6 && img.at(2, 3, 1) == 60));  // the good image
  REQUIRE_THAT(err.text.str(),
               Catch::Contains("0_truncated.png") && Catch::Contains("using the next sample"));
  ds.get(0, img);  // warned once only
  REQUIRE(err.text.str().find("0_truncated.png") == err.text.str().rfind("0_truncated.png"));

  fs::create_directories(dir.path / "empty");
  REQUIRE_THROWS_WITH(ImageFolder(dir.path.string()), Catch::Contains("class 'empty'"));
  REQUIRE_THROWS_WITH(ImageFolder(dir.file("nope")), Catch::Contains("is not a directory"));
}

// ---- transforms -----------------------------------------------------------------------------

TEST_CASE("data: flips crops and gray-to-RGB move bytes exactly", "[data]") {
  Image img = make_image(2, 3, 2, [](int y, int x, int c) { return 100 * c + 10 * y + x; });
  Image f = img;
  hflip(f);
  for (int y = 0; y < 2; ++y) {
    for (int x = 0; x < 3; ++x) {
      for (int c = 0; c < 2; ++c) REQUIRE(f.at(y, x, c) == img.at(y, 2 - x, c));
    }
  }
  Generator g(1);
  Image p1 = img, p0 = img;
  RandomHorizontalFlip(1.0f).apply(p1, g);
  RandomHorizontalFlip(0.0f).apply(p0, g);
  REQUIRE(p1.pixels == f.pixels);
  REQUIRE(p0.pixels == img.pixels);

  // Centre crop: top = round((7 - 4) / 2) = 2 (Python rounds 1.5 to 2), left = round(0.5) = 0.
  Image big = make_image(7, 6, 1, [](int y, int x, int) { return 10 * y + x; });
  Image c = center_crop(big, 4, 5);
  REQUIRE((c.height == 4 && c.width == 5));
  REQUIRE(c.at(0, 0, 0) == 20);
  REQUIRE(c.at(3, 4, 0) == 54);
  // A window larger than the image pads with zeros: 1 column on the left, 2 on the right.
  Image padded = center_crop(big, 7, 9);
  REQUIRE((padded.at(3, 0, 0) == 0 && padded.at(3, 1, 0) == 30 && padded.at(3, 6, 0) == 35));
  REQUIRE((padded.at(3, 7, 0) == 0 && padded.at(3, 8, 0) == 0 && padded.at(6, 3, 0) == 62));

  Image rgb = gray_to_rgb(big);
  REQUIRE(rgb.channels == 3);
  REQUIRE((rgb.at(5, 4, 0) == 54 && rgb.at(5, 4, 1) == 54 && rgb.at(5, 4, 2) == 54));
  REQUIRE_THROWS_WITH(gray_to_rgb(img), Catch::Contains("expects 1 or 3 channels, got 2"));
}

TEST_CASE("data: normalising writes (x / 255 - mean) / std in CHW order exactly", "[data]") {
  Image img =
      make_image(3, 4, 3, [](int y, int x, int c) { return (y * 91 + x * 17 + c * 60) % 256; });
  Pipeline p;
  const std::vector<float> mean = {0.485f, 0.456f, 0.406f}, stdv = {0.229f, 0.224f, 0.225f};
  p.normalize(mean, stdv);
  std::vector<float> out(3 * 3 * 4);
  p.to_chw(img, out.data());
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 3; ++y) {
      for (int x = 0; x < 4; ++x) {
        const float expected = (img.at(y, x, c) / 255.0f - mean[size_t(c)]) / stdv[size_t(c)];
        REQUIRE(out[size_t((c * 3 + y) * 4 + x)] == expected);
      }
    }
  }
  // The default pipeline scales to [0, 1]; one mean/std pair serves every channel.
  Pipeline plain;
  plain.to_chw(img, out.data());
  REQUIRE(out[5] == img.at(1, 1, 0) / 255.0f);
  Pipeline one;
  one.normalize({0.5f}, {0.25f});
  one.to_chw(img, out.data());
  REQUIRE(out[12 + 5] == (img.at(1, 1, 1) / 255.0f - 0.5f) / 0.25f);

  Pipeline two;
  two.normalize({0.5f, 0.5f}, {1.0f, 1.0f});
  REQUIRE_THROWS_WITH(two.to_chw(img, out.data()),
                      Catch::Contains("image has 3 channels but normalize has 2 means"));
  REQUIRE_THROWS_WITH(two.normalize({0.5f}, {0.0f}), Catch::Contains("must be positive"));
  REQUIRE_THROWS_WITH(two.normalize({0.5f}, {1.0f, 2.0f}), Catch::Contains("1 means and 2 stds"));
}

TEST_CASE("data: bilinear resize keeps constants and matches the torch antialiased resize",
          "[data]") {
  for (int c : {1, 3}) {
    Image flat = make_image(37, 23, c, [](int, int, int k) { return 173 + k; });
    const std::vector<std::pair<int, int>> sizes = {{11, 50}, {64, 7}, {1, 1}, {37, 23}, {100, 3}};
    for (auto [h, w] : sizes) {
      Image r = resize(flat, h, w);
      REQUIRE((r.height == h && r.width == w && r.channels == c));
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
          for (int k = 0; k < c; ++k) REQUIRE(int(r.at(y, x, k)) == 173 + k);
        }
      }
    }
  }
  // References: torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
  // antialias=True) in float64 on the 6x7 image (37y + 53x) % 256; ours rounds to uint8.
  Image src = make_image(6, 7, 1, [](int y, int x, int) { return (37 * y + 53 * x) % 256; });
  auto check = [&](int h, int w, const std::vector<double>& ref) {
    Image r = resize(src, h, w);
    for (size_t i = 0; i < ref.size(); ++i) {
      INFO(h << "x" << w << " element " << i << ": got " << int(r.pixels[i]) << ", torch "
             << ref[i]);
      REQUIRE(std::fabs(r.pixels[i] - ref[i]) <= 0.501);
    }
  };
  check(4, 3,
        {59.304, 157.816, 85.304, 111.206, 157.850, 100.635, 164.651, 109.229, 135.794, 182.268,
         111.772, 187.696});
  check(3, 11, {26.429, 50.519, 84.247,  117.974, 151.701, 185.429, 195.883, 156.468, 50.558,
                64.338, 88.429, 92.500,  116.591, 150.318, 184.045, 171.227, 123.500, 96.136,
                86.227, 99.591, 130.409, 154.500, 158.571, 182.662, 206.416, 170.325, 120.935,
                61.571, 95.299, 129.026, 162.753, 196.481, 220.571});
  check(9, 10,
        {0.000,   29.150,  66.250,  103.350, 140.450, 177.550, 201.850, 59.750,  32.850,  62.000,
         18.500,  47.650,  84.750,  121.850, 158.950, 196.050, 220.350, 78.250,  51.350,  80.500,
         43.167,  72.317,  109.417, 146.517, 183.617, 205.783, 204.483, 92.250,  76.017,  105.167,
         67.833,  96.983,  134.083, 171.183, 208.283, 170.717, 67.017,  74.250,  100.683, 129.833,
         92.500,  121.650, 158.750, 195.850, 149.750, 97.250,  51.150,  88.250,  125.350, 154.500,
         117.167, 146.317, 183.417, 220.517, 91.217,  38.717,  75.817,  112.917, 150.017, 179.167,
         141.833, 170.983, 208.083, 245.183, 115.883, 63.383,  100.483, 137.583, 174.683, 203.833,
         166.500, 195.650, 200.750, 148.250, 95.750,  88.050,  125.150, 162.250, 199.350, 228.500,
         185.000, 214.150, 187.250, 45.150,  69.450,  106.550, 143.650, 180.750, 217.850, 247.000});

  // A window of the same size as the output is a plain crop; bad windows are errors.
  Image crop = resize_crop(src, 1, 2, 3, 4, 3, 4);
  REQUIRE((crop.at(0, 0, 0) == src.at(1, 2, 0) && crop.at(2, 3, 0) == src.at(3, 5, 0)));
  REQUIRE_THROWS_WITH(resize_crop(src, 4, 0, 3, 7, 2, 2),
                      Catch::Contains("(top 4, left 0, 3x7) is not inside the 6x7 image"));
  REQUIRE_THROWS_WITH(resize(src, 0, 3), Catch::Contains("output size 0x3"));
  Image tall = resize_shorter(make_image(40, 20, 1, [](int, int, int) { return 9; }), 10);
  REQUIRE((tall.height == 20 && tall.width == 10));
}

TEST_CASE("data: random-resized crop has the output size and is reproducible", "[data]") {
  Image src = make_image(50, 70, 3, [](int y, int x, int c) { return (y * 5 + x * 3 + c) % 256; });
  RandomResizedCrop rrc(24, 16);
  Generator g1(42), g2(42), g3(43);
  Image a = src, b = src, c = src;
  rrc.apply(a, g1);
  rrc.apply(b, g2);
  rrc.apply(c, g3);
  REQUIRE((a.height == 24 && a.width == 16 && a.channels == 3));
  REQUIRE(a.pixels == b.pixels);
  REQUIRE(a.pixels != c.pixels);

  // Boxes stay inside the image, with area fraction and aspect ratio inside their ranges.
  Generator g(5);
  for (int i = 0; i < 2000; ++i) {
    const CropBox box = random_resized_crop_box(50, 70, g, 0.08f, 1.0f);
    REQUIRE((box.top >= 0 && box.left >= 0 && box.top + box.height <= 50 &&
             box.left + box.width <= 70));
    const double frac = double(box.height) * box.width / (50.0 * 70.0);
    const double ratio = double(box.width) / box.height;
    REQUIRE((frac > 0.06 && frac <= 1.0));
    REQUIRE((ratio > 0.6 && ratio < 1.6));  // 3/4..4/3 up to the rounding of small boxes
  }
  // A 1x100 strip: no draw fits, so the fallback crops the centre to the widest allowed ratio.
  const CropBox fb = random_resized_crop_box(1, 100, g);
  REQUIRE((fb.top == 0 && fb.left == 49 && fb.height == 1 && fb.width == 1));
  const CropBox tall = random_resized_crop_box(100, 1, g);
  REQUIRE((tall.top == 49 && tall.left == 0 && tall.height == 1 && tall.width == 1));
  REQUIRE_THROWS_WITH(RandomResizedCrop(8, 8, {0.5f, 0.2f}), Catch::Contains("scale (0.5, 0.2)"));

  Pipeline p = train_pipeline(32, {0.5f}, {0.5f});
  REQUIRE_THAT(p.describe(), Catch::Contains("RandomResizedCrop(32x32") &&
                                 Catch::Contains("RandomHorizontalFlip") &&
                                 Catch::Contains("Normalize"));
  Image e = src;
  Generator ge(0);
  eval_pipeline(32, {0.5f}, {0.5f}).augment(e, ge);  // shorter side to 36, centre 32x32
  REQUIRE((e.height == 32 && e.width == 32));
}

// ---- loader ---------------------------------------------------------------------------------

namespace {

std::vector<Batch> collect(DataLoader& loader, int epochs) {
  std::vector<Batch> out;
  for (int e = 0; e < epochs; ++e) {
    Batch b;
    while (loader.next(b)) out.push_back(b);
  }
  return out;
}

std::shared_ptr<Pipeline> augmenting_pipeline() {
  auto p = std::make_shared<Pipeline>();
  p->add<RandomResizedCrop>(4, 5, std::array<float, 2>{0.3f, 1.0f}).add<RandomHorizontalFlip>();
  p->normalize({0.5f, 0.4f, 0.3f}, {0.2f, 0.3f, 0.4f});
  return p;
}

}  // namespace

TEST_CASE("data: the loader gives the same batches with 0 1 and 2 workers", "[data]") {
  auto ds = std::make_shared<SyntheticDataset>(103, 9, 11);
  auto pipe = augmenting_pipeline();
  LoaderOptions opt;
  opt.batch_size = 16;
  opt.drop_last = false;
  opt.seed = 77;
  std::vector<std::vector<Batch>> runs;
  for (int workers : {0, 1, 2}) {
    opt.workers = workers;
    opt.prefetch = 3;
    DataLoader loader(ds, pipe, opt);
    REQUIRE(loader.batches_per_epoch() == 7);
    runs.push_back(collect(loader, 2));
  }
  REQUIRE(runs[0].size() == 14);
  for (size_t r = 1; r < runs.size(); ++r) {
    REQUIRE(runs[r].size() == runs[0].size());
    for (size_t i = 0; i < runs[0].size(); ++i) {
      INFO("run " << r << " batch " << i);
      REQUIRE(runs[r][i].indices == runs[0][i].indices);
      REQUIRE(runs[r][i].images.to_vector() == runs[0][i].images.to_vector());
      REQUIRE(runs[r][i].labels.to_vector_i64() == runs[0][i].labels.to_vector_i64());
    }
  }
  const Batch& last = runs[0][6];
  REQUIRE((last.epoch == 0 && last.index == 6));
  REQUIRE(last.images.shape() == Shape{7, 3, 4, 5});  // 103 = 6 * 16 + 7
  REQUIRE(last.labels.dtype() == DType::I64);
  // The same sample is augmented differently in another epoch and with another seed.
  REQUIRE(runs[0][0].images.to_vector() != runs[0][7].images.to_vector());
  opt.seed = 78;
  DataLoader other(ds, pipe, opt);
  REQUIRE(other.make_batch(0, 0).images.to_vector() != runs[0][0].images.to_vector());
}

TEST_CASE("data: each loader epoch covers the dataset once in a new order", "[data]") {
  auto ds = std::make_shared<SyntheticDataset>(100, 2, 3);
  auto pipe = std::make_shared<Pipeline>();  // no transforms: pixels / 255
  LoaderOptions opt;
  opt.batch_size = 16;
  opt.seed = 5;
  opt.workers = 2;
  for (bool drop_last : {false, true}) {
    opt.drop_last = drop_last;
    DataLoader loader(ds, pipe, opt);
    REQUIRE(loader.batches_per_epoch() == (drop_last ? 6 : 7));
    std::vector<int64_t> prev;
    for (int epoch = 0; epoch < 3; ++epoch) {
      std::vector<int64_t> seen;
      Batch b;
      while (loader.next(b)) {
        REQUIRE(b.epoch == epoch);
        const std::vector<int64_t> labels = b.labels.to_vector_i64();
        const std::vector<float> images = b.images.to_vector();
        for (size_t i = 0; i < b.indices.size(); ++i) {
          const int64_t idx = b.indices[i];
          REQUIRE(labels[i] == idx % 5);
          // Row i holds sample idx in CHW order: channel 1, y 1, x 2 is byte (7 idx + 5 + 1).
          REQUIRE(images[i * 18 + 6 + 5] == float((idx * 7 + 6) % 256) / 255.0f);
        }
        seen.insert(seen.end(), b.indices.begin(), b.indices.end());
      }
      REQUIRE(seen.size() == (drop_last ? 96u : 100u));
      REQUIRE(std::set<int64_t>(seen.begin(), seen.end()).size() == seen.size());
      if (!drop_last) REQUIRE(*std::max_element(seen.begin(), seen.end()) == 99);
      REQUIRE(seen != prev);
      REQUIRE(loader.position() == LoaderPosition{epoch + 1, 0});
      prev = seen;
    }
  }
  opt.shuffle = false;
  DataLoader ordered(ds, pipe, opt);
  std::vector<int64_t> identity(100);
  std::iota(identity.begin(), identity.end(), int64_t{0});
  REQUIRE(ordered.epoch_order(3) == identity);
}

TEST_CASE("data: a loader resumed at a saved position continues identically", "[data]") {
  auto ds = std::make_shared<SyntheticDataset>(50, 9, 11);
  auto pipe = augmenting_pipeline();
  LoaderOptions opt;
  opt.batch_size = 8;
  opt.seed = 9;
  opt.workers = 2;
  DataLoader reference(ds, pipe, opt);
  const std::vector<Batch> all = collect(reference, 3);  // 6 batches an epoch
  REQUIRE(all.size() == 18);

  DataLoader loader(ds, pipe, opt);
  Batch b;
  for (int i = 0; i < 4; ++i) REQUIRE(loader.next(b));
  const LoaderPosition saved = loader.position();
  REQUIRE(saved == LoaderPosition{0, 4});
  for (int i = 0; i < 5; ++i) loader.next(b);  // runs on into epoch 1 (one next() ends epoch 0)

  DataLoader resumed(ds, pipe, opt);
  resumed.seek(saved);
  std::vector<Batch> rest;
  while (rest.size() < 14) {
    if (resumed.next(b)) rest.push_back(b);
  }
  for (size_t i = 0; i < rest.size(); ++i) {
    INFO("batch " << i << " after the resume point");
    REQUIRE(rest[i].indices == all[4 + i].indices);
    REQUIRE(rest[i].images.to_vector() == all[4 + i].images.to_vector());
  }
  // Seeking a running loader backwards replays; the end-of-epoch position is valid too.
  resumed.seek({1, 2});
  REQUIRE(resumed.next(b));
  REQUIRE(b.images.to_vector() == all[8].images.to_vector());
  resumed.seek({0, 6});
  REQUIRE_FALSE(resumed.next(b));
  REQUIRE(resumed.position() == LoaderPosition{1, 0});
  REQUIRE_THROWS_WITH(resumed.seek({0, 7}), Catch::Contains("outside [0, 6]"));
}

TEST_CASE("data: the loader stops cleanly mid-epoch and reports worker errors", "[data]") {
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.workers = 2;
  opt.prefetch = 8;
  {
    // 1 ms a sample, 256 a batch: when the loader is destroyed after its first batch, both
    // workers are a few samples into batches that would take another quarter second.
    auto slow = std::make_shared<SyntheticDataset>(2048, 4, 4, false, 1000);
    opt.batch_size = 256;
    auto loader = std::make_unique<DataLoader>(slow, std::make_shared<Pipeline>(), opt);
    Batch b;
    REQUIRE(loader->next(b));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto t0 = std::chrono::steady_clock::now();
    loader.reset();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    INFO("destruction took " << ms << " ms");
    REQUIRE(ms < 100);  // the workers stop between samples instead of finishing their batches
    opt.batch_size = 4;
  }
  // Images of different sizes cannot share a batch: the error names the sample.
  auto ragged = std::make_shared<SyntheticDataset>(12, 4, 4, /*ragged=*/true);
  opt.shuffle = false;
  for (int workers : {0, 2}) {
    opt.workers = workers;
    DataLoader loader(ragged, std::make_shared<Pipeline>(), opt);
    Batch b;
    REQUIRE_THROWS_WITH(loader.next(b), Catch::Contains("sample 1 is 4x5x3") &&
                                            Catch::Contains("fixed-size Resize"));
    REQUIRE(loader.position() == LoaderPosition{0, 1});
  }
  opt.batch_size = 13;
  REQUIRE_THROWS_WITH(DataLoader(ragged, std::make_shared<Pipeline>(), opt),
                      Catch::Contains("12 samples, fewer than one batch of 13"));
}

TEST_CASE("data: the loader feeds Fashion-MNIST batches as 3-channel 32x32", "[data]") {
  if (!FashionMnist::available(Split::Test)) {
    WARN("SKIPPED: Fashion-MNIST not found in " << FashionMnist::default_dir());
    return;
  }
  auto ds = std::make_shared<FashionMnist>(Split::Test);
  auto pipe = std::make_shared<Pipeline>();
  pipe->add<Resize>(32, 32).add<RandomHorizontalFlip>().add<GrayToRgb>();
  pipe->normalize({FashionMnist::kMean}, {FashionMnist::kStd});
  LoaderOptions opt;
  opt.batch_size = 128;
  opt.workers = 2;
  opt.seed = 1;
  DataLoader loader(ds, pipe, opt);
  Batch b;
  for (int i = 0; i < 20; ++i) {
    REQUIRE(loader.next(b));
    REQUIRE(b.images.shape() == Shape{128, 3, 32, 32});
    const std::vector<int64_t> labels = b.labels.to_vector_i64();
    for (size_t k = 0; k < labels.size(); ++k) {
      REQUIRE(labels[k] == ds->labels()[size_t(b.indices[k])]);
    }
  }
  // The three channels are copies of the gray one.
  const std::vector<float> v = b.images.to_vector();
  REQUIRE(std::equal(v.begin(), v.begin() + 1024, v.begin() + 1024));
  REQUIRE(std::equal(v.begin(), v.begin() + 1024, v.begin() + 2048));
}
