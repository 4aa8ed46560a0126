// core/safetensors: round trips, a file written by Python's safetensors package, and every kind
// of malformed file failing with a message that names the file and the tensor.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/half.h"
#include "core/safetensors.h"
#include "test_util.h"

using namespace nextvit;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
using nextvit::test::TempDir;

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

// A safetensors file from a header text and a data section, the length prefix computed.
std::string file_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i, n >>= 8) out[i] = static_cast<char>(n & 0xff);
  return out + header + data;
}

// The little-endian length prefix of a file's bytes.
uint64_t header_length(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[i]);
  return n;
}

// The raw bytes of a tensor (CPU, contiguous), for bit-exact comparison of any dtype.
std::string tensor_bytes(const Tensor& t) {
  Tensor c = t.cpu().contiguous();
  if (c.numel() == 0) return {};
  return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

Tensor half_tensor(const std::vector<float>& values, const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* p = static_cast<uint16_t*>(t.raw_data());
  for (size_t i = 0; i < values.size(); ++i) {
    p[i] = dtype == DType::F16 ? float_to_f16(values[i]) : float_to_bf16(values[i]);
  }
  return t;
}

// Writes a file whose single tensor "w" has the given JSON entry and `data_bytes` data bytes,
// and returns the message read_safetensors throws for it.
std::string read_error(const TempDir& dir, const std::string& header, const std::string& data) {
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, file_bytes(header, data));
  try {
    read_safetensors(path);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("read_safetensors accepted " << header);
  return {};
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype keeps names order values and metadata",
          "[core][safetensors]") {
  TempDir dir;
  Generator g(7);
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"z.last_name_first", test::random_tensor({2, 3, 4, 5}, g)},
      {"scalar", Tensor::scalar(-2.5f)},
      {"empty", Tensor::empty({0, 7})},
      {"empty_i64", Tensor::empty({3, 0}, DType::I64)},
      {"counts", Tensor::from_vector_i64({-1, 0, int64_t(1) << 40, 7}, {2, 2})},
      {"half", half_tensor({1.0f, -2.5f, 65504.0f, 5.960464477539063e-08f}, {4}, DType::F16)},
      {"brain", half_tensor({1.0f, -3.0f, 0.15625f, 1e30f, -0.0f, 7.0f}, {3, 2}, DType::BF16)},
      {"odd", test::random_tensor({1}, g)},  // 4 bytes: later tensors start unaligned
      {"a.first_name_last", test::random_tensor({5}, g)},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "x y"}};
  const std::string path = dir.file("round.safetensors");
  write_safetensors(path, tensors, metadata);
  REQUIRE_FALSE(fs::exists(path + ".tmp"));

  SafeTensors back = read_safetensors(path);
  REQUIRE(back.size() == tensors.size());
  REQUIRE(back.metadata == metadata);
  REQUIRE(back.source() == path);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = back.tensors()[i];
    INFO("tensor " << tensors[i].first);
    REQUIRE(name == tensors[i].first);  // file order is write order, not alphabetical
    REQUIRE(t.dtype() == tensors[i].second.dtype());
    REQUIRE(t.shape() == tensors[i].second.shape());
    REQUIRE(t.device().is_cpu());
    REQUIRE(tensor_bytes(t) == tensor_bytes(tensors[i].second));
    REQUIRE(back.contains(name));
    REQUIRE(back.find(name) == &t);
  }
  REQUIRE(back.at("scalar").dim() == 0);
  REQUIRE(back.at("scalar").item() == -2.5f);
  REQUIRE(back.at("counts").to_vector_i64()[2] == int64_t(1) << 40);
  REQUIRE(back.at("brain").to(DType::F32).to_vector()[2] == 0.15625f);
  REQUIRE(back.find("nope") == nullptr);
  REQUIRE_THROWS_WITH(back.at("nope"), Catch::Contains(path) && Catch::Contains("'nope'"));

  // The header is padded with spaces so that the data section starts on an 8-byte boundary.
  const std::string bytes = read_bytes(path);
  const uint64_t header_len = header_length(bytes);
  REQUIRE((8 + header_len) % 8 == 0);
  const std::string header = bytes.substr(8, header_len);
  REQUIRE(header.front() == '{');
  REQUIRE(header.find_last_not_of(' ') == header.rfind('}'));

  // Writing through SafeTensors gives the same bytes, and an existing file is replaced.
  const std::string path2 = dir.file("again.safetensors");
  write_bytes(path2, "old contents");
  write_safetensors(path2, back);
  REQUIRE(read_bytes(path2) == bytes);
}

TEST_CASE("safetensors: views and strided tensors are written as contiguous data",
          "[core][safetensors]") {
  TempDir dir;
  Tensor base = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor t = base.transpose(0, 1);  // (3, 2): 0 3 1 4 2 5
  Tensor n = base.narrow(1, 1, 2);  // (2, 2) with an offset: 1 2 4 5
  const std::string path = dir.file("views.safetensors");
  write_safetensors(path, {{"t", t}, {"n", n}});
  SafeTensors back = read_safetensors(path);
  REQUIRE(back.at("t").shape() == Shape{3, 2});
  REQUIRE(back.at("t").to_vector() == std::vector<float>{0, 3, 1, 4, 2, 5});
  REQUIRE(back.at("n").to_vector() == std::vector<float>{1, 2, 4, 5});
  const std::string bytes = read_bytes(path);
  REQUIRE(bytes.size() - 8 - header_length(bytes) == 40);  // two tensors, no gaps in the data
}

TEST_CASE("safetensors: an empty list and an empty file round trip", "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("none.safetensors");
  write_safetensors(path, std::vector<std::pair<std::string, Tensor>>{});
  SafeTensors back = read_safetensors(path);
  REQUIRE(back.size() == 0);
  REQUIRE(back.metadata.empty());
  REQUIRE(read_bytes(path).size() % 8 == 0);
}

TEST_CASE("safetensors: reads the file written by the Python safetensors package",
          "[core][safetensors]") {
  // tests/data/safetensors_sample.safetensors, from tools/make_reference_data.py (write_sample).
  SafeTensors f =
      read_safetensors(std::string(NEXTVIT_TEST_DATA_DIR) + "/safetensors_sample.safetensors");
  REQUIRE(f.metadata == std::map<std::string, std::string>{{"writer", "python safetensors"}});
  // Python lays tensors out by decreasing alignment, then by name; file order follows that.
  REQUIRE(f.names() == std::vector<std::string>{"i64", "empty", "f32", "scalar", "bf16", "f16"});

  REQUIRE(f.at("f32").dtype() == DType::F32);
  REQUIRE(f.at("f32").shape() == Shape{2, 3});
  REQUIRE(f.at("f32").to_vector() == std::vector<float>{-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f});

  const Tensor& h = f.at("f16");
  REQUIRE(h.dtype() == DType::F16);
  REQUIRE(h.to(DType::F32).to_vector() ==
          std::vector<float>{1.0f, -2.5f, 65504.0f, 5.960464477539063e-08f});

  const Tensor& b = f.at("bf16");
  REQUIRE(b.dtype() == DType::BF16);
  REQUIRE(b.shape() == Shape{2, 2});
  REQUIRE(b.to(DType::F32).to_vector() ==
          std::vector<float>{1.0f, -3.0f, 0.15625f, 1.2676506002282294e30f});  // 2^100

  REQUIRE(f.at("i64").dtype() == DType::I64);
  REQUIRE(f.at("i64").shape() == Shape{1, 3});
  REQUIRE(f.at("i64").to_vector_i64() == std::vector<int64_t>{-1, int64_t(1) << 40, 3});

  REQUIRE(f.at("scalar").shape() == Shape{});
  REQUIRE(f.at("scalar").item() == 3.25f);
  REQUIRE(f.at("empty").shape() == Shape{0, 3});
  REQUIRE(f.at("empty").numel() == 0);
}

TEST_CASE("safetensors: the reference data files parse", "[core][safetensors]") {
  const std::string dir = NEXTVIT_TEST_DATA_DIR;
  SafeTensors w = read_safetensors(dir + "/nextvit_tiny_weights.safetensors");
  REQUIRE(w.at("proj_head.0.weight").shape() == Shape{10, 64});
  REQUIRE(w.at("stem.0.norm.num_batches_tracked").dtype() == DType::I64);
  REQUIRE(w.at("stem.0.norm.num_batches_tracked").shape() == Shape{});
  SafeTensors io = read_safetensors(dir + "/nextvit_tiny_io.safetensors");
  REQUIRE(io.at("input").shape() == Shape{2, 3, 64, 64});
  REQUIRE(io.at("targets").dtype() == DType::I64);
  REQUIRE(io.at("loss").dim() == 0);
  // A gradient and a running statistic for every parameter and buffer of the weights file.
  for (const auto& [name, t] : w.tensors()) {
    const bool buffer = name.find("running_") != std::string::npos ||
                        name.find("num_batches_tracked") != std::string::npos;
    INFO(name);
    REQUIRE(io.at((buffer ? "running." : "grad.") + name).shape() == t.shape());
  }
}

TEST_CASE("safetensors: malformed files fail naming the file and the tensor",
          "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data8(8, '\0');
  // The well-formed base case reads, so each failure below is caused by its one change.
  write_bytes(path, file_bytes(ok, data8));
  REQUIRE(read_safetensors(path).at("w").to_vector() == std::vector<float>{0, 0});

  SECTION("missing file") {
    REQUIRE_THROWS_WITH(read_safetensors(dir.file("absent.safetensors")),
                        Catch::Contains("absent.safetensors") && Catch::Contains("cannot open"));
  }
  SECTION("shorter than the length prefix") {
    write_bytes(path, std::string("\x10\0\0", 3));
    REQUIRE_THROWS_WITH(read_safetensors(path),
                        Catch::Contains(path) && Catch::Contains("truncated"));
  }
  SECTION("header length beyond the file") {
    std::string bytes = file_bytes(ok, data8);
    bytes[5] = 1;  // + 2^40
    write_bytes(path, bytes);
    REQUIRE_THROWS_WITH(read_safetensors(path),
                        Catch::Contains(path) && Catch::Contains("header length 1099511627830") &&
                            Catch::Contains("past the end of the file"));
  }
  SECTION("file cut inside the data") {
    write_bytes(path, file_bytes(ok, data8).substr(0, 8 + ok.size() + 5));
    REQUIRE_THROWS_WITH(read_safetensors(path), Catch::Contains(path) && Catch::Contains("'w'") &&
                                                    Catch::Contains("truncated"));
  }
  SECTION("bad JSON") {
    REQUIRE_THAT(read_error(dir, R"({"w":{"dtype":"F32",)", data8),
                 Catch::Contains(path) && Catch::Contains("not valid JSON"));
    REQUIRE_THAT(read_error(dir, "[1, 2]", ""), Catch::Contains("must be a JSON object"));
  }
  SECTION("offsets past the data section") {
    REQUIRE_THAT(
        read_error(dir, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data8),
        Catch::Contains(path) && Catch::Contains("'w'") &&
            Catch::Contains("past the end of the 8-byte data section"));
  }
  SECTION("offsets that end before they begin") {
    REQUIRE_THAT(
        read_error(dir, R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data8),
        Catch::Contains("'w'") && Catch::Contains("end before they begin"));
  }
  SECTION("size does not match shape and dtype") {
    REQUIRE_THAT(
        read_error(dir, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8),
        Catch::Contains(path) && Catch::Contains("'w'") &&
            Catch::Contains("span 8 bytes but F32 (3,) needs 12"));
    REQUIRE_THAT(
        read_error(dir,
                   R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                   data8),
        Catch::Contains("'w'") && Catch::Contains("more than 2^63 bytes"));
    REQUIRE_THAT(read_error(dir,
                            R"({"w":{"dtype":"F32","shape":[0,4611686018427387904],)"
                            R"("data_offsets":[0,8]}})",
                            data8),
                 Catch::Contains("'w'") && Catch::Contains("more than 2^63 bytes"));
  }
  SECTION("overlapping tensors") {
    const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
    REQUIRE_THAT(read_error(dir, h, data8), Catch::Contains(path) && Catch::Contains("'b'") &&
                                                Catch::Contains("overlaps tensor 'a'"));
  }
  SECTION("a name used twice") {
    const std::string h = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
    REQUIRE_THAT(read_error(dir, h, data8),
                 Catch::Contains(path) && Catch::Contains("names 'w' twice"));
  }
  SECTION("bytes that belong to no tensor") {
    REQUIRE_THAT(
        read_error(dir, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data8),
        Catch::Contains("bytes [0, 4)") && Catch::Contains("before tensor 'w'"));
    REQUIRE_THAT(
        read_error(dir, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data8),
        Catch::Contains("cover 4 bytes of the 8-byte data section"));
  }
  SECTION("unsupported and unknown dtypes") {
    REQUIRE_THAT(
        read_error(dir, R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", data8),
        Catch::Contains(path) && Catch::Contains("tensor 'w' has dtype F64") &&
            Catch::Contains("F32, F16, BF16 and I64"));
    REQUIRE_THAT(read_error(dir, R"({"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,8]}})", data8),
                 Catch::Contains("tensor 'w' has dtype Q4"));
  }
  SECTION("malformed entries") {
    REQUIRE_THAT(read_error(dir, R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", data8),
                 Catch::Contains("'w'") && Catch::Contains("no \"shape\""));
    REQUIRE_THAT(
        read_error(dir, R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8),
        Catch::Contains("'w'") && Catch::Contains("shape must hold non-negative"));
    REQUIRE_THAT(read_error(dir, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8),
                 Catch::Contains("'w'") && Catch::Contains("data_offsets must be [begin, end]"));
    REQUIRE_THAT(read_error(dir, R"({"w":[1]})", data8),
                 Catch::Contains("'w'") && Catch::Contains("must be an object"));
    REQUIRE_THAT(read_error(dir, R"({"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", data8),
                 Catch::Contains("'w'") && Catch::Contains("dtype must be a string"));
  }
  SECTION("malformed metadata") {
    REQUIRE_THAT(
        read_error(dir,
                   R"({"__metadata__":{"epoch":3},"w":{"dtype":"F32","shape":[2],)"
                   R"("data_offsets":[0,8]}})",
                   data8),
        Catch::Contains(path) && Catch::Contains("__metadata__ entry 'epoch' must be a string"));
    REQUIRE_THAT(read_error(dir, R"({"__metadata__":"x"})", ""),
                 Catch::Contains("__metadata__ must be an object"));
  }
}

TEST_CASE("safetensors: bad tensors to write fail before the file is touched",
          "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("out.safetensors");
  write_bytes(path, "previous");
  Tensor a = Tensor::zeros({2});
  REQUIRE_THROWS_WITH(write_safetensors(path, {{"a", a}, {"a", a}}),
                      Catch::Contains(path) && Catch::Contains("two tensors are named 'a'"));
  REQUIRE_THROWS_WITH(write_safetensors(path, {{"", a}}), Catch::Contains("must not be empty"));
  REQUIRE_THROWS_WITH(write_safetensors(path, {{"__metadata__", a}}), Catch::Contains("reserved"));
  REQUIRE_THROWS_WITH(write_safetensors(path, {{"u", Tensor()}}),
                      Catch::Contains("tensor 'u' is undefined"));
  REQUIRE_THROWS_WITH(write_safetensors(path, {{std::string("bad\xff"), a}}),
                      Catch::Contains("UTF-8"));
  REQUIRE(read_bytes(path) == "previous");
  REQUIRE_FALSE(fs::exists(path + ".tmp"));

  const std::string nowhere = dir.file("no/such/dir/out.safetensors");
  REQUIRE_THROWS_WITH(write_safetensors(nowhere, {{"a", a}}),
                      Catch::Contains(nowhere) && Catch::Contains("cannot open"));
  SafeTensors s;
  s.add("x", a);
  REQUIRE_THROWS_WITH(s.add("x", a), Catch::Contains("two tensors are named 'x'"));
}

TEST_CASE("cuda: safetensors writes CUDA tensors through a host copy", "[cuda][safetensors]") {
  if (!cuda_available()) {
    WARN("skipped: no CUDA device");
    return;
  }
  TempDir dir;
  Generator g(3);
  Tensor host = test::random_tensor({3, 4}, g);
  Tensor dev = host.to(Device::cuda());
  const std::string path = dir.file("cuda.safetensors");
  write_safetensors(path, {{"dense", dev}, {"strided", dev.transpose(0, 1)}});
  SafeTensors back = read_safetensors(path);
  REQUIRE(back.at("dense").device().is_cpu());
  REQUIRE(back.at("dense").to_vector() == host.to_vector());
  REQUIRE(back.at("strided").to_vector() == host.transpose(0, 1).contiguous().to_vector());
}
