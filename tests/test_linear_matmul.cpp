// ops::linear and ops::matmul on the CPU: forward against naive loops, gradients against
// central differences, partial gradient requests, and the shape errors.
#include <vector>

#include "test_util.h"

using namespace nextvit;

namespace {

// y[r, o] = b[o] + sum_i x[r, i] w[o, i] over the flattened leading dimensions of x.
Tensor naive_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
  std::vector<float> xv = x.to_vector(), wv = w.to_vector();
  std::vector<float> bv = b.defined() ? b.to_vector() : std::vector<float>(size_t(out), 0.0f);
  std::vector<float> y(size_t(rows * out));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double s = bv[o];
      for (int64_t i = 0; i < in; ++i) s += double(xv[r * in + i]) * wv[o * in + i];
      y[r * out + o] = float(s);
    }
  }
  Shape shape = x.shape();
  shape.back() = out;
  return Tensor::from_vector(y, shape);
}

// c[b] = a[b] x b[b] for every leading index b.
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), batch = a.numel() / (M * K);
  std::vector<float> av = a.to_vector(), bv = b.to_vector(), c(size_t(batch * M * N));
  for (int64_t t = 0; t < batch; ++t) {
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += double(av[(t * M + i) * K + k]) * bv[(t * K + k) * N + j];
        c[(t * M + i) * N + j] = float(s);
      }
    }
  }
  Shape shape = a.shape();
  shape.back() = N;
  return Tensor::from_vector(c, shape);
}

}  // namespace

TEST_CASE("linear: forward matches a naive product for 1-D to 3-D inputs", "[linear]") {
  Generator g(31);
  Tensor w = test::random_tensor({5, 7}, g), b = test::random_tensor({5}, g);
  for (const Shape& xs : {Shape{7}, Shape{3, 7}, Shape{2, 9, 7}}) {
    Tensor x = test::random_tensor(xs, g);
    NV_REQUIRE_CLOSE(ops::linear(Variable(x), Variable(w), Variable(b)).data(),
                     naive_linear(x, w, b), 1e-5, 1e-5);
    NV_REQUIRE_CLOSE(ops::linear(Variable(x), Variable(w), Variable()).data(),
                     naive_linear(x, w, Tensor()), 1e-5, 1e-5);
  }
  // A layer the size of an E-MHSA projection (196 tokens, 64 -> 96): the GEMM's blocked paths.
  Tensor x = test::random_tensor({2, 196, 64}, g), w2 = test::random_tensor({96, 64}, g);
  Tensor b2 = test::random_tensor({96}, g);
  NV_REQUIRE_CLOSE(ops::linear(Variable(x), Variable(w2), Variable(b2)).data(),
                   naive_linear(x, w2, b2), 1e-5, 1e-5);
}

TEST_CASE("linear: gradients match central differences", "[linear][gradcheck]") {
  Generator g(32);
  Tensor x = test::random_tensor({2, 3, 6}, g), w = test::random_tensor({4, 6}, g);
  Tensor b = test::random_tensor({4}, g);
  test::check_gradients([](auto& v) { return ops::linear(v[0], v[1], v[2]); }, {x, w, b});
  test::check_gradients([](auto& v) { return ops::linear(v[0], v[1], Variable()); }, {x, w});
}

TEST_CASE("linear: only the inputs that require a gradient get one", "[linear]") {
  Generator g(33);
  Variable x(test::random_tensor({4, 3}, g), false), w(test::random_tensor({2, 3}, g), true);
  Variable b(test::random_tensor({2}, g), true);
  ops::sum(ops::linear(x, w, b)).backward();
  REQUIRE_FALSE(x.grad().defined());
  // d sum(y) / d b = number of rows; d sum(y) / d w[o, i] = sum over rows of x[:, i].
  NV_REQUIRE_CLOSE(b.grad(), Tensor::full({2}, 4.0f), 0, 0);
  std::vector<float> xv = x.data().to_vector();
  std::vector<float> col(3, 0.0f);
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < 3; ++i) col[i] += xv[r * 3 + i];
  NV_REQUIRE_CLOSE(w.grad(),
                   Tensor::from_vector({col[0], col[1], col[2], col[0], col[1], col[2]}, {2, 3}),
                   1e-6, 1e-6);
}

TEST_CASE("linear: bad shapes are refused", "[linear]") {
  Variable x(Tensor::zeros({2, 3, 64})), w(Tensor::zeros({256, 128}));
  REQUIRE_THROWS_WITH(ops::linear(x, w, Variable()),
                      Catch::Contains("linear: weight (256, 128) expects 128 input features, x "
                                      "(2, 3, 64) has 64"));
  Variable w2(Tensor::zeros({5, 64})), b(Tensor::zeros({4}));
  REQUIRE_THROWS_WITH(ops::linear(x, w2, b),
                      Catch::Contains("linear: bias must have shape (5,) to match weight (5, 64), "
                                      "got (4,)"));
  REQUIRE_THROWS_WITH(ops::linear(x, Variable(Tensor::zeros({64})), Variable()),
                      Catch::Contains("linear: weight must be (out, in), got (64,)"));
  REQUIRE_THROWS_WITH(
      ops::linear(Variable(Tensor::zeros({2, 0})), Variable(Tensor::zeros({3, 0})), Variable()),
      Catch::Contains("linear: weight (3, 0) is empty"));
}

TEST_CASE("matmul: forward matches a naive product, batched and not", "[matmul]") {
  Generator g(34);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 5}, {5, 4}}, {{2, 3, 5, 4}, {2, 3, 4, 6}}, {{1, 1}, {1, 1}}, {{4, 49, 32}, {4, 32, 49}}};
  for (const auto& [as, bs] : cases) {
    Tensor a = test::random_tensor(as, g), b = test::random_tensor(bs, g);
    INFO(shape_str(as) << " x " << shape_str(bs));
    NV_REQUIRE_CLOSE(ops::matmul(Variable(a), Variable(b)).data(), naive_matmul(a, b), 1e-5, 1e-5);
  }
}

TEST_CASE("matmul: gradients match central differences", "[matmul][gradcheck]") {
  Generator g(35);
  test::check_gradients([](auto& v) { return ops::matmul(v[0], v[1]); },
                        {test::random_tensor({2, 3, 4}, g), test::random_tensor({2, 4, 5}, g)});
  test::check_gradients([](auto& v) { return ops::matmul(v[0], v[1]); },
                        {test::random_tensor({3, 2}, g), test::random_tensor({2, 3}, g)});
  // Only one side trainable: the other gets nothing.
  Variable a(test::random_tensor({2, 2}, g), false), b(test::random_tensor({2, 2}, g), true);
  ops::sum(ops::matmul(a, b)).backward();
  REQUIRE_FALSE(a.grad().defined());
  REQUIRE(b.grad().defined());
}

TEST_CASE("matmul: bad shapes are refused", "[matmul]") {
  auto mm = [](const Shape& as, const Shape& bs) {
    return ops::matmul(Variable(Tensor::zeros(as)), Variable(Tensor::zeros(bs)));
  };
  REQUIRE_THROWS_WITH(mm({2, 3, 4}, {2, 5, 6}),
                      Catch::Contains("matmul: a (2, 3, 4) has 4 columns but b (2, 5, 6) has 5 "
                                      "rows"));
  REQUIRE_THROWS_WITH(mm({2, 3, 4}, {3, 4, 6}),
                      Catch::Contains("matmul: a (2, 3, 4) and b (3, 4, 6) must have equal batch "
                                      "dimensions"));
  REQUIRE_THROWS_WITH(mm({2, 3, 4}, {4, 6}), Catch::Contains("equal batch dimensions"));
  REQUIRE_THROWS_WITH(mm({4}, {4, 6}), Catch::Contains("matmul: inputs need at least 2 "
                                                       "dimensions"));
}

// The CUDA backend against the CPU (test::check_backends).
TEST_CASE("cuda: linear and batched matmul match the CPU", "[cuda]") {
  if (test::skip_without_gpu()) return;
  Tensor x = test::seeded_tensor({2, 49, 65}, 9), w = test::seeded_tensor({33, 65}, 10),
         b = test::seeded_tensor({33}, 11);
  test::check_backends(
      "linear", [](auto& v, Device) { return ops::linear(v[0], v[1], v[2]); }, {x, w, b}, 1e-4,
      1e-4);
  Tensor q = test::seeded_tensor({2, 3, 50, 32}, 12), k = test::seeded_tensor({2, 3, 32, 49}, 13);
  test::check_backends(
      "matmul", [](auto& v, Device) { return ops::matmul(v[0], v[1]); }, {q, k}, 1e-4, 1e-4);
}
