// The CPU BatchNorm kernels walk a thread's channels in blocks (kernels/cpu/channel_blocks.h):
// several whole channels when S is small, chunks of 512 positions of one channel when S is
// larger, four images at a time plus a remainder. These tests cover each kind of block (S = 1,
// 4, odd S, S just above and several times the chunk size), image counts that are not a
// multiple of four and channel counts that threads cannot split evenly, forward and backward,
// against a double-precision reference; and that one and two threads give the same bits.
#include <omp.h>

#include <cmath>

#include "test_util.h"

using namespace nextvit;

namespace {

struct BnCase {
  Shape shape;
  bool relu, training;
};

// y, dx, dweight, dbias of BatchNorm (+ ReLU) in double for x (N, C, S), output gradient dy;
// the ReLU mask comes from y_kernel (the kernel's output), so that a value rounding to either
// side of zero cannot make the reference disagree with the kernel about it.
struct BnGrads {
  std::vector<float> y, dx, dw, db;
};

BnGrads reference(const BnCase& k, const std::vector<float>& x, const std::vector<float>& dy,
                  const std::vector<float>& gamma, const std::vector<float>& beta,
                  const std::vector<float>& rm, const std::vector<float>& rv,
                  const std::vector<float>& y_kernel, float eps) {
  const int64_t N = k.shape[0], C = k.shape[1], S = shape_numel(k.shape) / (N * C);
  const double M = double(N * S);
  BnGrads r{std::vector<float>(x.size()), std::vector<float>(x.size()), std::vector<float>(C),
            std::vector<float>(C)};
  for (int64_t c = 0; c < C; ++c) {
    auto at = [&](int64_t n, int64_t i) { return (n * C + c) * S + i; };
    double mean = rm[c], var = rv[c];
    if (k.training) {
      double s = 0, ss = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) s += x[at(n, i)];
      mean = s / M;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) ss += (x[at(n, i)] - mean) * (x[at(n, i)] - mean);
      var = ss / M;
    }
    const double invstd = 1.0 / std::sqrt(var + eps);
    double sum_g = 0, sum_gx = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) {
        const int64_t j = at(n, i);
        const double v = (x[j] - mean) * invstd * gamma[c] + beta[c];
        r.y[j] = static_cast<float>(k.relu && v < 0 ? 0.0 : v);
        const double g = k.relu && !(y_kernel[j] > 0) ? 0.0 : dy[j];
        sum_g += g;
        sum_gx += g * (x[j] - mean) * invstd;
      }
    r.db[c] = static_cast<float>(sum_g);
    r.dw[c] = static_cast<float>(sum_gx);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) {
        const int64_t j = at(n, i);
        const double g = k.relu && !(y_kernel[j] > 0) ? 0.0 : dy[j];
        const double xhat = (x[j] - mean) * invstd;
        const double d = k.training ? g - sum_g / M - xhat * sum_gx / M : g;
        r.dx[j] = static_cast<float>(gamma[c] * invstd * d);
      }
  }
  return r;
}

// Everything one forward and backward produce, for comparisons.
struct BnRun {
  Tensor y, dx, dw, db, rm, rv;
};

BnRun run_op(const BnCase& k, const Tensor& x, const Tensor& dy, const Tensor& w, const Tensor& b,
             const Tensor& rm0, const Tensor& rv0) {
  BnRun r{Tensor(), Tensor(), Tensor(), Tensor(), rm0.clone(), rv0.clone()};
  Variable xv(x.clone(), true), wv(w.clone(), true), bv(b.clone(), true);
  const ops::BatchNormOptions o{k.training, 0.1f, 1e-5f};
  Variable y = k.relu ? ops::batch_norm_relu(xv, wv, bv, r.rm, r.rv, o)
                      : ops::batch_norm(xv, wv, bv, r.rm, r.rv, o);
  y.backward(dy);
  r.y = y.data();
  r.dx = xv.grad();
  r.dw = wv.grad();
  r.db = bv.grad();
  return r;
}

Tensor as_tensor(const std::vector<float>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.to_vector() == b.to_vector();  // no NaN here: equality is bit equality
}

}  // namespace

TEST_CASE("batch_norm blocks: every block kind matches a double reference forward and backward",
          "[batch_norm]") {
  Generator g(31);
  const std::vector<BnCase> cases = {
      {{128, 9, 1}, true, true},     // S = 1: many channels per block
      {{6, 5}, false, true},         // BatchNorm1d on (N, C), N not a multiple of 4
      {{7, 13, 4}, true, true},      // S = 4, three images after the groups of four
      {{5, 7, 3}, false, false},     // odd S, eval
      {{3, 11, 7, 7}, true, true},   // S = 49, fewer images than a group of four
      {{4, 3, 520}, false, true},    // one chunk of 512 and one of 8 positions
      {{9, 2, 1100}, true, true},    // three chunks, the last partial
      {{2, 3, 1100}, true, false},   // chunks in eval mode
      {{8, 67, 4, 4}, false, true},  // enough work for threads, 67 channels
  };
  for (const BnCase& k : cases) {
    INFO("input " << shape_str(k.shape) << " relu " << k.relu << " training " << k.training);
    const int64_t C = k.shape[1];
    // Values around 3 with spread 1: the shifted moments must keep the variance accurate.
    Tensor x = test::random_tensor(k.shape, g, 1.5f, 4.5f);
    Tensor dy = test::random_tensor(k.shape, g);
    Tensor w = test::random_tensor({C}, g, 0.5f, 1.5f), b = test::random_tensor({C}, g);
    Tensor rm = test::random_tensor({C}, g, 2.5f, 3.5f), rv = test::random_tensor({C}, g, 0.5f, 1);
    const BnRun r = run_op(k, x, dy, w, b, rm, rv);
    const BnGrads ref = reference(k, x.to_vector(), dy.to_vector(), w.to_vector(), b.to_vector(),
                                  rm.to_vector(), rv.to_vector(), r.y.to_vector(), 1e-5f);
    NV_REQUIRE_CLOSE(r.y, as_tensor(ref.y, k.shape), 1e-5, 1e-5);
    NV_REQUIRE_CLOSE(r.db, as_tensor(ref.db, {C}), 1e-5, 1e-4);
    NV_REQUIRE_CLOSE(r.dw, as_tensor(ref.dw, {C}), 1e-5, 1e-4);
    // dx subtracts the mean terms from g: judge it against the scale of g * gamma * invstd.
    NV_REQUIRE_CLOSE(r.dx, as_tensor(ref.dx, k.shape), 1e-4, 1e-5 * test::max_abs(r.dx));
  }
}

TEST_CASE("batch_norm blocks: one and two threads give the same bits", "[batch_norm]") {
  const int saved = omp_get_max_threads();
  // Channel counts two threads split unevenly, for blocks of many channels (S = 1, 4, 49) and
  // for chunked channels (S = 1100); each is large enough for the kernels to use threads.
  const std::vector<BnCase> cases = {{{128, 259, 1}, false, true},
                                     {{128, 67, 4}, true, true},
                                     {{16, 45, 7, 7}, true, true},
                                     {{6, 9, 1100}, false, true},
                                     {{6, 9, 1100}, true, false}};
  for (const BnCase& k : cases) {
    INFO("input " << shape_str(k.shape) << " relu " << k.relu << " training " << k.training);
    const int64_t C = k.shape[1];
    Tensor x = test::seeded_tensor(k.shape, 32, -1.0f, 3.0f), dy = test::seeded_tensor(k.shape, 33);
    Tensor w = test::seeded_tensor({C}, 34), b = test::seeded_tensor({C}, 35);
    Tensor rm = test::seeded_tensor({C}, 36), rv = test::seeded_tensor({C}, 37, 0.5f, 2.0f);
    omp_set_num_threads(1);
    const BnRun one = run_op(k, x, dy, w, b, rm, rv);
    omp_set_num_threads(2);
    const BnRun two = run_op(k, x, dy, w, b, rm, rv);
    omp_set_num_threads(saved);
    CHECK(same_bits(one.y, two.y));
    CHECK(same_bits(one.rm, two.rm));
    CHECK(same_bits(one.rv, two.rv));
    CHECK(same_bits(one.dx, two.dx));
    CHECK(same_bits(one.dw, two.dw));
    CHECK(same_bits(one.db, two.db));
  }
}
