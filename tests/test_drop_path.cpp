// ops::drop_path: identity outside training, per-sample masks with the right statistics and
// scaling, the backward reusing the forward's mask, reproducibility from the generator state,
// gradients by central differences, and the errors for bad input.
#include <cmath>

#include "test_util.h"

using namespace nextvit;

TEST_CASE("drop_path: identity in eval mode and for p = 0", "[drop_path]") {
  Generator g(61);
  Variable x(test::random_tensor({4, 3, 2, 2}, g), true);
  const auto state = g.state();
  Variable eval = ops::drop_path(x, 0.5f, /*training=*/false, g);
  Variable zero = ops::drop_path(x, 0.0f, /*training=*/true, g);
  REQUIRE(eval.impl() == x.impl());
  REQUIRE(zero.impl() == x.impl());
  REQUIRE(g.state() == state);  // nothing drawn
}

TEST_CASE("drop_path: drops whole samples with probability p and rescales the rest",
          "[drop_path]") {
  Generator g(62);
  const int64_t n = 8000, per_sample = 6;
  const float p = 0.3f;
  Tensor x = test::random_tensor({n, 2, 3}, g, 0.5f, 1.5f);  // no zeros of its own
  Variable y = ops::drop_path(Variable(x), p, true, g);
  std::vector<float> xv = x.to_vector(), yv = y.data().to_vector();
  int64_t dropped = 0;
  const float scale = 1.0f / (1.0f - p);
  for (int64_t r = 0; r < n; ++r) {
    const bool gone = yv[r * per_sample] == 0.0f;
    dropped += gone;
    for (int64_t i = 0; i < per_sample; ++i) {
      const int64_t k = r * per_sample + i;
      REQUIRE(yv[k] == (gone ? 0.0f : xv[k] * scale));
    }
  }
  // Binomial(8000, 0.3): mean 2400, standard deviation 41; allow 5 of them.
  REQUIRE(std::abs(double(dropped) - 2400.0) < 5 * 41.0);
  // p = 1 drops everything (and divides by nothing).
  Variable all = ops::drop_path(Variable(x), 1.0f, true, g);
  for (float v : all.data().to_vector()) REQUIRE(v == 0.0f);
}

TEST_CASE("drop_path: the backward applies the forward's mask", "[drop_path]") {
  Generator g(63);
  const int64_t n = 64;
  Variable x(test::random_tensor({n, 5}, g, 0.5f, 1.5f), true);
  Variable y = ops::drop_path(x, 0.5f, true, g);
  // Draws made after the forward must not change the mask the backward uses.
  for (int i = 0; i < 100; ++i) g.next_u64();
  y.backward(Tensor::ones({n, 5}));
  std::vector<float> xv = x.data().to_vector(), yv = y.data().to_vector(),
                     gv = x.grad().to_vector();
  int64_t kept = 0;
  for (int64_t k = 0; k < n * 5; ++k) {
    // dL/dx = factor of the sample = y / x.
    REQUIRE(gv[k] == Approx(yv[k] / xv[k]).epsilon(1e-6));
    kept += gv[k] != 0.0f;
  }
  REQUIRE(kept > 0);
  REQUIRE(kept < n * 5);
}

TEST_CASE("drop_path: masks replay from the generator state", "[drop_path]") {
  Generator a(64), b(99);
  Tensor x = test::random_tensor({32, 4}, a, 0.5f, 1.5f);
  b.set_state(a.state());
  Variable ya = ops::drop_path(Variable(x), 0.4f, true, a);
  Variable yb = ops::drop_path(Variable(x), 0.4f, true, b);
  REQUIRE(ya.data().to_vector() == yb.data().to_vector());
  REQUIRE(a.state() == b.state());
}

TEST_CASE("drop_path: gradients match central differences", "[drop_path][gradcheck]") {
  Generator g(65);
  // A fresh generator per call so that every evaluation draws the same mask.
  test::check_gradients(
      [](auto& v) {
        Generator mask(7);
        return ops::drop_path(v[0], 0.5f, true, mask);
      },
      {test::random_tensor({6, 2, 3}, g)}, {1e-2f, 1e-2, 1e-3, 0, {}});
}

TEST_CASE("drop_path: bad input gives errors that name the op", "[drop_path]") {
  Generator g(66);
  Variable x(Tensor::zeros({2, 3}));
  REQUIRE_THROWS_WITH(ops::drop_path(x, 1.5f, true, g),
                      Catch::Contains("drop_path: drop probability must be in [0, 1], got 1.5"));
  REQUIRE_THROWS_WITH(ops::drop_path(x, -0.1f, false, g),
                      Catch::Contains("drop_path: drop probability must be in [0, 1]"));
  REQUIRE_THROWS_WITH(ops::drop_path(Variable(Tensor::scalar(1.0f)), 0.5f, true, g),
                      Catch::Contains("drop_path: expected an input with a batch dimension"));
  REQUIRE_THROWS_WITH(ops::drop_path(Variable(), 0.5f, true, g),
                      Catch::Contains("drop_path: input 'x' is undefined"));
}

// The CUDA backend against the CPU (test::check_backends).
TEST_CASE("cuda: drop-path matches the CPU", "[cuda]") {
  if (test::skip_without_gpu()) return;
  Tensor a = test::seeded_tensor({8, 3, 4, 4}, 23);
  test::check_backends("drop_path",
                       [](auto& v, Device) {
                         Generator g(5);  // the same mask on both devices
                         return ops::drop_path(v[0], 0.4f, true, g);
                       },
                       {a});
}
