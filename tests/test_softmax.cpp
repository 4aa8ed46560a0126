// ops::softmax over the last dimension: forward against a double reference, rows with large
// outliers, gradients by central differences, and the error for a scalar.
#include <cmath>

#include "test_util.h"

using namespace nextvit;

namespace {

Tensor reference_softmax(const Tensor& x) {
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  std::vector<float> v = x.to_vector(), y(v.size());
  for (int64_t r = 0; r < rows; ++r) {
    double max = v[r * cols];
    for (int64_t i = 0; i < cols; ++i) max = std::max(max, double(v[r * cols + i]));
    double sum = 0;
    for (int64_t i = 0; i < cols; ++i) sum += std::exp(double(v[r * cols + i]) - max);
    for (int64_t i = 0; i < cols; ++i) {
      y[r * cols + i] = static_cast<float>(std::exp(double(v[r * cols + i]) - max) / sum);
    }
  }
  return Tensor::from_vector(y, x.shape());
}

}  // namespace

TEST_CASE("softmax: matches a double reference and rows sum to one", "[softmax]") {
  Generator g(31);
  for (const Shape& shape : {Shape{2, 3, 5, 49}, Shape{7}, Shape{4, 1}, Shape{64, 1000}}) {
    INFO("input " << shape_str(shape));
    Tensor x = test::random_tensor(shape, g, -5.0f, 5.0f);
    Variable y = ops::softmax(Variable(x));
    NV_REQUIRE_CLOSE(y.data(), reference_softmax(x), 1e-5, 1e-7);
    const int64_t cols = shape.back();
    std::vector<float> yv = y.data().to_vector();
    for (size_t r = 0; r < yv.size() / cols; ++r) {
      double s = 0;
      for (int64_t i = 0; i < cols; ++i) s += yv[r * cols + i];
      REQUIRE(s == Approx(1.0).epsilon(1e-5));
    }
  }
}

TEST_CASE("softmax: large outliers stay finite", "[softmax]") {
  // exp(1e4) overflows float; subtracting the row maximum keeps every exponent <= 0.
  Tensor x = Tensor::from_vector({1e4f, 0.0f, -1e4f, 2.0f,            // one dominant value
                                  -1e4f, -1e4f + 1.0f, -1e4f, -1e4f,  // all very negative
                                  1e4f, 1e4f, 1e4f - 1.0f, -3.0f},    // a tie at the top
                                 {3, 4});
  Variable xv(x, true);
  Variable y = ops::softmax(xv);
  for (float v : y.data().to_vector()) REQUIRE(std::isfinite(v));
  NV_REQUIRE_CLOSE(y.data(), reference_softmax(x), 1e-5, 1e-7);
  REQUIRE(y.data().to_vector()[0] == 1.0f);
  y.backward(Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {3, 4}));
  for (float v : xv.grad().to_vector()) REQUIRE(std::isfinite(v));
}

TEST_CASE("softmax: gradients match central differences", "[softmax][gradcheck]") {
  Generator g(32);
  test::check_gradients([](auto& v) { return ops::softmax(v[0]); },
                        {test::random_tensor({2, 3, 7}, g, -2.0f, 2.0f)},
                        {1e-2f, 1e-2, 1e-3, 0, {}});
  test::check_gradients([](auto& v) { return ops::softmax(v[0]); },
                        {test::random_tensor({5}, g, -2.0f, 2.0f)});
}

TEST_CASE("softmax: the backward is y * (dy - sum(y * dy))", "[softmax]") {
  Tensor x = Tensor::from_vector({0.5f, -1.0f, 2.0f}, {1, 3});
  Variable xv(x, true);
  Variable y = ops::softmax(xv);
  const std::vector<float> dy{0.3f, -0.7f, 1.1f};
  y.backward(Tensor::from_vector(dy, {1, 3}));
  std::vector<float> yv = y.data().to_vector(), expected(3);
  const double dot = double(yv[0]) * dy[0] + double(yv[1]) * dy[1] + double(yv[2]) * dy[2];
  for (int i = 0; i < 3; ++i) expected[i] = static_cast<float>(yv[i] * (dy[i] - dot));
  NV_REQUIRE_CLOSE(xv.grad(), Tensor::from_vector(expected, {1, 3}), 1e-6, 1e-7);
}

TEST_CASE("softmax: a scalar input is an error", "[softmax]") {
  REQUIRE_THROWS_WITH(ops::softmax(Variable(Tensor::scalar(1.0f))),
                      Catch::Contains("softmax: expected at least one dimension"));
  REQUIRE_THROWS_WITH(ops::softmax(Variable(Tensor::from_vector_i64({1, 2}, {2}))),
                      Catch::Contains("softmax: input 'x' must be f32"));
}

// The CUDA backend against the CPU (test::check_backends).
TEST_CASE("cuda: softmax matches the CPU", "[cuda]") {
  if (test::skip_without_gpu()) return;
  for (Shape s : {Shape{2, 3, 50, 49}, Shape{7, 1}, Shape{3, 1000}, Shape{5, 4099}}) {
    Tensor x = test::seeded_tensor(s, 21, -8.0f, 8.0f);
    test::check_backends("softmax", [](auto& v, Device) { return ops::softmax(v[0]); }, {x});
  }
}
