// ops::reshape, ops::transpose, ops::permute and ops::concat: values against index arithmetic
// written here, gradients by central differences, and the errors for bad input.
#include "test_util.h"

using namespace nextvit;

namespace {

Tensor arange(const Shape& shape) {
  std::vector<float> v(shape_numel(shape));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  return Tensor::from_vector(v, shape);
}

}  // namespace

TEST_CASE("reshape: keeps the element order and infers one dimension", "[shape]") {
  Tensor x = arange({2, 3, 4});
  Variable y = ops::reshape(Variable(x), {4, -1});
  REQUIRE(y.shape() == Shape{4, 6});
  REQUIRE(y.data().is_contiguous());
  REQUIRE(y.data().to_vector() == x.to_vector());
  // A non-contiguous input is copied first.
  Variable t = ops::reshape(Variable(x.transpose(0, 2)), {-1});
  REQUIRE(t.data().to_vector() == x.transpose(0, 2).contiguous().to_vector());
  Generator g(41);
  test::check_gradients(
      [](auto& v) {
        return ops::reshape(v[0], {3, 1, -1});
      },
      {test::random_tensor({2, 3, 2}, g)});
}

TEST_CASE("transpose and permute: element (i, j, k) moves to the permuted index", "[shape]") {
  const Shape shape{2, 3, 4, 5};
  Tensor x = arange(shape);
  const std::vector<int64_t> order{2, 0, 3, 1};
  Variable p = ops::permute(Variable(x), order);
  REQUIRE(p.shape() == Shape{4, 2, 5, 3});
  REQUIRE(p.data().is_contiguous());
  Variable t = ops::transpose(Variable(x), 1, -1);
  REQUIRE(t.shape() == Shape{2, 5, 4, 3});
  std::vector<float> pv = p.data().to_vector(), tv = t.data().to_vector();
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 4; ++c)
        for (int64_t d = 0; d < 5; ++d) {
          const float v = float(((a * 3 + b) * 4 + c) * 5 + d);
          // permute(2, 0, 3, 1): out[c, a, d, b]
          REQUIRE(pv[((c * 2 + a) * 5 + d) * 3 + b] == v);
          // transpose(1, 3): out[a, d, c, b]
          REQUIRE(tv[((a * 5 + d) * 4 + c) * 3 + b] == v);
        }
  Generator g(42);
  Tensor r = test::random_tensor({2, 3, 4}, g);
  test::check_gradients(
      [](auto& v) {
        return ops::permute(v[0], {1, 2, 0});
      },
      {r}, {1e-2f, 1e-2, 1e-3, 0, {}});
  test::check_gradients(
      [](auto& v) {
        return ops::permute(v[0], {0, -1, 1});
      },
      {r}, {1e-2f, 1e-2, 1e-3, 0, {}});
  test::check_gradients([](auto& v) { return ops::transpose(v[0], 0, 2); }, {r},
                        {1e-2f, 1e-2, 1e-3, 0, {}});
}

TEST_CASE("concat: blocks land in order along any dimension", "[shape]") {
  Tensor a = arange({2, 1, 3}), b = arange({2, 2, 3}), c = arange({2, 3, 3});
  Variable y = ops::concat({Variable(a), Variable(b), Variable(c)}, 1);
  REQUIRE(y.shape() == Shape{2, 6, 3});
  std::vector<float> yv = y.data().to_vector(), av = a.to_vector(), bv = b.to_vector(),
                     cv = c.to_vector();
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t k = 0; k < 3; ++k) {
      REQUIRE(yv[(n * 6 + 0) * 3 + k] == av[(n * 1 + 0) * 3 + k]);
      for (int64_t j = 0; j < 2; ++j)
        REQUIRE(yv[(n * 6 + 1 + j) * 3 + k] == bv[(n * 2 + j) * 3 + k]);
      for (int64_t j = 0; j < 3; ++j)
        REQUIRE(yv[(n * 6 + 3 + j) * 3 + k] == cv[(n * 3 + j) * 3 + k]);
    }
  // Along the first and the last dimension (negative index).
  Variable first = ops::concat({Variable(arange({1, 2})), Variable(arange({2, 2}))}, 0);
  REQUIRE(first.data().to_vector() == std::vector<float>{0, 1, 0, 1, 2, 3});
  Variable last = ops::concat({Variable(arange({2, 1})), Variable(arange({2, 2}))}, -1);
  REQUIRE(last.data().to_vector() == std::vector<float>{0, 0, 1, 1, 2, 3});
  // Large blocks (copied by several threads) along the channel axis, as the NTB does.
  Tensor big_a = arange({4, 24, 32, 32}), big_b = arange({4, 8, 32, 32});
  Variable big = ops::concat({Variable(big_a), Variable(big_b)}, 1);
  REQUIRE(big.data().narrow(1, 0, 24).contiguous().to_vector() == big_a.to_vector());
  REQUIRE(big.data().narrow(1, 24, 8).contiguous().to_vector() == big_b.to_vector());
  // An empty block contributes nothing.
  Variable empty = ops::concat({Variable(Tensor::zeros({2, 0})), Variable(arange({2, 2}))}, 1);
  REQUIRE(empty.data().to_vector() == std::vector<float>{0, 1, 2, 3});
}

TEST_CASE("concat: gradients go back to each input, none to constants", "[shape][gradcheck]") {
  Generator g(43);
  Tensor a = test::random_tensor({2, 3, 2, 2}, g), b = test::random_tensor({2, 1, 2, 2}, g);
  test::check_gradients(
      [](auto& v) {
        return ops::concat({v[0], v[1]}, 1);
      },
      {a, b}, {1e-2f, 1e-2, 1e-3, 0, {}});
  test::check_gradients(
      [](auto& v) {
        return ops::concat({v[1], v[0], v[1]}, -3);
      },
      {a, b}, {1e-2f, 1e-2, 1e-3, 0, {}});
  Variable va(a, true), vb(b, false);
  ops::sum(ops::concat({va, vb}, 1)).backward();
  REQUIRE(va.grad().to_vector() == std::vector<float>(a.numel(), 1.0f));
  REQUIRE_FALSE(vb.grad().defined());
}

TEST_CASE("shape ops: bad input gives errors that name the op and the shapes", "[shape]") {
  Variable x(Tensor::zeros({2, 3, 4}));
  REQUIRE_THROWS_WITH(ops::reshape(x, {5, -1}),
                      Catch::Contains("reshape: cannot reshape input (2, 3, 4) (24 elements) to "
                                      "(5, -1)"));
  REQUIRE_THROWS_WITH(ops::reshape(x, {-1, -1}), Catch::Contains("only one dimension may be -1"));
  REQUIRE_THROWS_WITH(
      ops::transpose(x, 0, 3),
      Catch::Contains("transpose: dimension 3 is out of range for input (2, 3, 4)"));
  REQUIRE_THROWS_WITH(
      ops::permute(x, {0, 1}),
      Catch::Contains("permute: order [0, 1] has 2 axes but input (2, 3, 4) has 3"));
  REQUIRE_THROWS_WITH(ops::permute(x, {0, 1, -2}),
                      Catch::Contains("permute: axis 1 appears twice in order [0, 1, -2]"));
  REQUIRE_THROWS_WITH(ops::concat({}, 0), Catch::Contains("concat: needs at least one input"));
  REQUIRE_THROWS_WITH(ops::concat({x, Variable(Tensor::zeros({2, 5, 3}))}, 1),
                      Catch::Contains("concat: input 1 of shape (2, 5, 3) does not match input 0 "
                                      "of shape (2, 3, 4) outside dim 1"));
  REQUIRE_THROWS_WITH(ops::concat({x, Variable(Tensor::zeros({2, 3}))}, 0),
                      Catch::Contains("concat: input 1 of shape (2, 3) does not match"));
  REQUIRE_THROWS_WITH(ops::concat({x, x}, 3),
                      Catch::Contains("concat: dimension 3 is out of range for input (2, 3, 4)"));
}

// The CUDA backend against the CPU (test::check_backends).
TEST_CASE("cuda: shape ops match the CPU", "[cuda]") {
  if (test::skip_without_gpu()) return;
  Tensor a = test::seeded_tensor({2, 3, 5, 7}, 4), b = test::seeded_tensor({2, 4, 5, 7}, 5);
  test::check_backends("reshape", [](auto& v, Device) { return ops::reshape(v[0], {6, -1}); }, {a});
  test::check_backends("transpose", [](auto& v, Device) { return ops::transpose(v[0], 1, 3); },
                       {a});
  test::check_backends("permute",
                       [](auto& v, Device) {
                         return ops::permute(v[0], {0, 2, 3, 1});
                       },
                       {a});
  test::check_backends("concat",
                       [](auto& v, Device) {
                         return ops::concat({v[0], v[1]}, 1);
                       },
                       {a, b});
}
