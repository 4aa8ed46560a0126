// The CUDA backend against the CPU backend (test::check_backends) for the ops whose test files
// do not hold their own "cuda: ..." case yet. Shapes include odd sizes that do not divide any
// block or tile size.
#include <functional>

#include "test_util.h"

using namespace nextvit;

using test::check_backends;
using test::skip_without_gpu;

namespace {

Tensor rnd(const Shape& s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  return test::seeded_tensor(s, seed, lo, hi);
}

}  // namespace

TEST_CASE("cuda: tensors move between host and device unchanged", "[cuda]") {
  if (skip_without_gpu()) return;
  Tensor a = rnd({3, 5, 7}, 1);
  Tensor d = a.to(Device::cuda());
  REQUIRE(d.device().is_cuda());
  REQUIRE(d.cpu().to_vector() == a.to_vector());
  // A non-contiguous device tensor made contiguous on the device.
  REQUIRE(d.permute({2, 0, 1}).contiguous().cpu().to_vector() ==
          a.permute({2, 0, 1}).contiguous().to_vector());
  Tensor z = Tensor::zeros({1000}, DType::F32, Device::cuda());
  REQUIRE(z.cpu().to_vector() == std::vector<float>(1000, 0.0f));
  REQUIRE(Tensor::full({33}, 1.5f, Device::cuda()).cpu().to_vector() ==
          std::vector<float>(33, 1.5f));
}

TEST_CASE("cuda: out of memory is a clear error", "[cuda]") {
  if (skip_without_gpu()) return;
  REQUIRE_THROWS_WITH(Tensor::empty({int64_t(1) << 40}, DType::F32, Device::cuda()),
                      Catch::Contains("CUDA out of memory"));
}

TEST_CASE("cuda: elementwise ops match the CPU", "[cuda]") {
  if (skip_without_gpu()) return;
  for (Shape s : {Shape{1}, Shape{7, 13}, Shape{3, 257, 129}}) {
    Tensor a = rnd(s, 2), b = rnd(s, 3);
    check_backends("add", [](auto& v, Device) { return ops::add(v[0], v[1]); }, {a, b});
    check_backends("mul", [](auto& v, Device) { return ops::mul(v[0], v[1]); }, {a, b});
    check_backends("scale", [](auto& v, Device) { return ops::scale(v[0], 0.3f); }, {a});
    check_backends("relu", [](auto& v, Device) { return ops::relu(v[0]); }, {a});
    check_backends(
        "sum", [](auto& v, Device) { return ops::sum(v[0]); }, {a}, 1e-4, 1e-3);
    check_backends("mean", [](auto& v, Device) { return ops::mean(v[0]); }, {a});
  }
}

TEST_CASE("cuda: shape ops match the CPU", "[cuda]") {
  if (skip_without_gpu()) return;
  Tensor a = rnd({2, 3, 5, 7}, 4), b = rnd({2, 4, 5, 7}, 5);
  check_backends("reshape", [](auto& v, Device) { return ops::reshape(v[0], {6, -1}); }, {a});
  check_backends("transpose", [](auto& v, Device) { return ops::transpose(v[0], 1, 3); }, {a});
  check_backends("permute", [](auto& v, Device) { return ops::permute(v[0], {0, 2, 3, 1}); }, {a});
  check_backends("concat", [](auto& v, Device) { return ops::concat({v[0], v[1]}, 1); }, {a, b});
}

TEST_CASE("cuda: convolutions match the CPU, incl. MHCA's grouped 3x3", "[cuda]") {
  if (skip_without_gpu()) return;
  struct Case {
    Shape x, w;
    int64_t stride, pad, groups;
    bool bias;
  };
  for (const Case& c : {Case{{2, 3, 17, 19}, {8, 3, 3, 3}, 2, 1, 1, false},     // stem
                        Case{{2, 64, 14, 14}, {64, 32, 3, 3}, 1, 1, 2, false},  // MHCA
                        Case{{3, 96, 9, 11}, {96, 32, 3, 3}, 1, 1, 3, false},
                        Case{{2, 40, 7, 5}, {72, 40, 1, 1}, 1, 0, 1, true},  // 1x1 + bias
                        Case{{1, 6, 12, 12}, {4, 3, 5, 5}, 1, 2, 2, true}}) {
    Tensor x = rnd(c.x, 6), w = rnd(c.w, 7, -0.2f, 0.2f), b = rnd({c.w[0]}, 8);
    ops::Conv2dOptions o = ops::Conv2dOptions::make(c.stride, c.pad, c.groups);
    if (c.bias) {
      check_backends(
          "conv2d+bias", [o](auto& v, Device) { return ops::conv2d(v[0], v[1], v[2], o); },
          {x, w, b}, 1e-4, 1e-4);
    } else {
      check_backends(
          "conv2d", [o](auto& v, Device) { return ops::conv2d(v[0], v[1], {}, o); }, {x, w}, 1e-4,
          1e-4);
    }
  }
}

TEST_CASE("cuda: linear and batched matmul match the CPU", "[cuda]") {
  if (skip_without_gpu()) return;
  Tensor x = rnd({2, 49, 65}, 9), w = rnd({33, 65}, 10), b = rnd({33}, 11);
  check_backends(
      "linear", [](auto& v, Device) { return ops::linear(v[0], v[1], v[2]); }, {x, w, b}, 1e-4,
      1e-4);
  Tensor q = rnd({2, 3, 50, 32}, 12), k = rnd({2, 3, 32, 49}, 13);
  check_backends(
      "matmul", [](auto& v, Device) { return ops::matmul(v[0], v[1]); }, {q, k}, 1e-4, 1e-4);
}

TEST_CASE("cuda: softmax, cross-entropy and drop-path match the CPU", "[cuda]") {
  if (skip_without_gpu()) return;
  for (Shape s : {Shape{2, 3, 50, 49}, Shape{7, 1}, Shape{3, 1000}, Shape{5, 4099}}) {
    Tensor x = rnd(s, 21, -8.0f, 8.0f);
    check_backends("softmax", [](auto& v, Device) { return ops::softmax(v[0]); }, {x});
  }
  Tensor logits = rnd({6, 11}, 22, -3.0f, 3.0f);
  Tensor targets = Tensor::from_vector_i64({0, 10, 3, 3, 7, 1}, {6});
  check_backends(
      "cross_entropy",
      [targets](auto& v, Device d) { return ops::cross_entropy(v[0], targets.to(d), 0.1f); },
      {logits});
  Tensor a = rnd({8, 3, 4, 4}, 23);
  check_backends("drop_path",
                 [](auto& v, Device) {
                   Generator g(5);  // the same mask on both devices
                   return ops::drop_path(v[0], 0.4f, true, g);
                 },
                 {a});
}
