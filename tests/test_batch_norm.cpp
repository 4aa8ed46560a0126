// ops::batch_norm and ops::batch_norm_relu: forward against a double-precision reference written
// here, running statistics over two steps, eval mode, the fused ReLU against BN then ReLU,
// gradients by central differences, PyTorch reference values and the errors for bad input.
#include <algorithm>
#include <cmath>

#include "test_util.h"

using namespace nextvit;

namespace {

// BatchNorm of x laid out (N, C, S) in double: y, and the batch mean and biased variance when
// training (mean/var are the given running statistics otherwise).
struct BnReference {
  std::vector<float> y;
  std::vector<double> mean, var;
};

BnReference reference_bn(const Tensor& x, const std::vector<float>& gamma,
                         const std::vector<float>& beta, const std::vector<float>& running_mean,
                         const std::vector<float>& running_var, bool training, float eps,
                         bool relu = false) {
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  const std::vector<float> xv = x.to_vector();
  BnReference r;
  r.y.resize(xv.size());
  r.mean.resize(C);
  r.var.resize(C);
  for (int64_t c = 0; c < C; ++c) {
    double mean = running_mean.empty() ? 0 : running_mean[c];
    double var = running_var.empty() ? 1 : running_var[c];
    if (training) {
      double s = 0, ss = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) s += xv[(n * C + c) * S + i];
      mean = s / double(N * S);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < S; ++i) {
          const double d = xv[(n * C + c) * S + i] - mean;
          ss += d * d;
        }
      var = ss / double(N * S);
    }
    r.mean[c] = mean;
    r.var[c] = var;
    const double g = gamma.empty() ? 1.0 : gamma[c], b = beta.empty() ? 0.0 : beta[c];
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) {
        const int64_t k = (n * C + c) * S + i;
        double v = (xv[k] - mean) / std::sqrt(var + eps) * g + b;
        if (relu && v < 0) v = 0;
        r.y[k] = static_cast<float>(v);
      }
  }
  return r;
}

std::vector<float> random_vector(int64_t n, Generator& g, float lo, float hi) {
  std::vector<float> v(n);
  for (float& f : v) f = g.uniform(lo, hi);
  return v;
}

// x whose values in each channel alternate in sign with magnitude in [0.5, 1): the channel
// mean stays near 0, so every normalised value is at least ~0.4 from it and a ReLU after the
// normalisation has no kink within reach of a central difference.
Tensor balanced_input(const Shape& shape, Generator& g) {
  const int64_t N = shape[0], C = shape[1], S = shape_numel(shape) / (N * C);
  std::vector<float> v(shape_numel(shape));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < S; ++i) {
        const float sign = ((n * S + i) % 2 == 0) ? 1.0f : -1.0f;
        v[(n * C + c) * S + i] = sign * g.uniform(0.5f, 1.0f);
      }
  return Tensor::from_vector(v, shape);
}

}  // namespace

TEST_CASE("batch_norm: training forward matches a double reference for 2-d 1-d and flat input",
          "[batch_norm]") {
  Generator g(11);
  const float eps = 1e-5f;
  // (4, 16, 32, 32) is large enough for the kernels to split channels across threads.
  for (const Shape& shape :
       {Shape{3, 4, 5, 7}, Shape{2, 3, 9}, Shape{6, 5}, Shape{1, 2, 1, 3}, Shape{4, 16, 32, 32}}) {
    INFO("input " << shape_str(shape));
    const int64_t C = shape[1];
    Tensor x = test::random_tensor(shape, g, -2.0f, 3.0f);
    std::vector<float> w = random_vector(C, g, 0.5f, 1.5f), b = random_vector(C, g, -1, 1);
    Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C});
    Variable y = ops::batch_norm(Variable(x), Variable(Tensor::from_vector(w, {C})),
                                 Variable(Tensor::from_vector(b, {C})), rm, rv, {true, 0.1f, eps});
    BnReference ref = reference_bn(x, w, b, {}, {}, true, eps);
    NV_REQUIRE_CLOSE(y.data(), Tensor::from_vector(ref.y, shape), 1e-5, 1e-5);
  }
}

TEST_CASE("batch_norm: running statistics follow PyTorch over two steps", "[batch_norm]") {
  Generator g(12);
  const int64_t C = 3;
  const Shape shape{4, C, 3, 2};
  const float momentum = 0.25f;
  Tensor x1 = test::random_tensor(shape, g, -1.0f, 2.0f);
  Tensor x2 = test::random_tensor(shape, g, 0.0f, 5.0f);
  Variable w(Tensor::ones({C}), true), b(Tensor::zeros({C}), true);
  Tensor rm = Tensor::from_vector({0.5f, -1.0f, 2.0f}, {C});
  Tensor rv = Tensor::from_vector({1.0f, 2.0f, 0.5f}, {C});
  const std::vector<float> rm0 = rm.to_vector(), rv0 = rv.to_vector();
  std::vector<double> em(rm0.begin(), rm0.end()), ev(rv0.begin(), rv0.end());
  const double M = 4 * 3 * 2;
  for (const Tensor& x : {x1, x2}) {
    BnReference ref = reference_bn(x, {}, {}, {}, {}, true, 1e-5f);
    for (int64_t c = 0; c < C; ++c) {
      em[c] = (1 - momentum) * em[c] + momentum * ref.mean[c];
      ev[c] = (1 - momentum) * ev[c] + momentum * ref.var[c] * M / (M - 1);  // unbiased
    }
  }
  ops::batch_norm(Variable(x1), w, b, rm, rv, {true, momentum, 1e-5f});
  {
    NoGradGuard no_grad;  // the statistics update with or without a graph
    ops::batch_norm(Variable(x2), w, b, rm, rv, {true, momentum, 1e-5f});
  }
  std::vector<float> emf(em.begin(), em.end()), evf(ev.begin(), ev.end());
  NV_REQUIRE_CLOSE(rm, Tensor::from_vector(emf, {C}), 1e-6, 1e-6);
  NV_REQUIRE_CLOSE(rv, Tensor::from_vector(evf, {C}), 1e-6, 1e-6);
}

TEST_CASE("batch_norm: values and running statistics equal PyTorch's", "[batch_norm]") {
  // x[i] = fmod(0.37 i, 1.3) - 0.4 as (2, 2, 3); the constants below come from
  //   bn = torch.nn.BatchNorm1d(2, momentum=0.1); weight (1.5, -0.5), bias (0.25, 1.0)
  //   bn.train(); y = bn(x); bn(2 * x + 1); bn.eval(); y_eval = bn(x)
  // with torch 2.x in float32.
  std::vector<float> xv(12);
  for (int i = 0; i < 12; ++i) xv[i] = static_cast<float>(std::fmod(i * 0.37, 1.3) - 0.4);
  Tensor x = Tensor::from_vector(xv, {2, 2, 3});
  std::vector<float> x2v(12);
  for (int i = 0; i < 12; ++i) x2v[i] = xv[i] * 2.0f + 1.0f;
  Variable w(Tensor::from_vector({1.5f, -0.5f}, {2})), b(Tensor::from_vector({0.25f, 1.0f}, {2}));
  Tensor rm = Tensor::zeros({2}), rv = Tensor::ones({2});
  const ops::BatchNormOptions train{true, 0.1f, 1e-5f}, eval{false, 0.1f, 1e-5f};

  Variable y = ops::batch_norm(Variable(x), w, b, rm, rv, train);
  NV_REQUIRE_CLOSE(y.data(),
                   Tensor::from_vector(
                       {-1.9310243f, -0.61529762f, 0.70042896f, 0.38681504f, 1.6001384f, 1.1174184f,
                        1.3405122f, 2.6562388f, -0.65085781f, 0.88258159f, 0.39986151f, 1.6131849f},
                       {2, 2, 3}),
                   1e-5, 1e-6);
  NV_REQUIRE_CLOSE(rm, Tensor::from_vector({0.021333333f, 0.024f}, {2}), 1e-6, 1e-7);
  NV_REQUIRE_CLOSE(rv, Tensor::from_vector({0.92135066f, 0.917624f}, {2}), 1e-6, 1e-7);

  ops::batch_norm(Variable(Tensor::from_vector(x2v, {2, 2, 3})), w, b, rm, rv, train);
  NV_REQUIRE_CLOSE(rm, Tensor::from_vector({0.16186666f, 0.1696f}, {2}), 1e-6, 1e-7);
  NV_REQUIRE_CLOSE(rv, Tensor::from_vector({0.91461825f, 0.8963576f}, {2}), 1e-6, 1e-7);

  Variable ye = ops::batch_norm(Variable(x), w, b, rm, rv, eval);
  NV_REQUIRE_CLOSE(ye.data(),
                   Tensor::from_vector({-0.63125628f, -0.050932076f, 0.52939212f, 0.71460778f,
                                        1.2057528f, 1.0103511f, 0.81171197f, 1.3920362f,
                                        -0.066616513f, 0.91529071f, 0.71988887f, 1.2110341f},
                                       {2, 2, 3}),
                   1e-5, 1e-6);
}

TEST_CASE("batch_norm: eval mode uses and keeps the running statistics", "[batch_norm]") {
  Generator g(13);
  const int64_t C = 4;
  Tensor x = test::random_tensor({2, C, 3, 3}, g, -1.0f, 1.0f);
  std::vector<float> w = random_vector(C, g, 0.5f, 1.5f), b = random_vector(C, g, -1, 1);
  std::vector<float> m = random_vector(C, g, -0.5f, 0.5f), v = random_vector(C, g, 0.2f, 2.0f);
  Tensor rm = Tensor::from_vector(m, {C}), rv = Tensor::from_vector(v, {C});
  Variable wv(Tensor::from_vector(w, {C})), bv(Tensor::from_vector(b, {C}));
  Variable y = ops::batch_norm(Variable(x), wv, bv, rm, rv, {false, 0.1f, 1e-5f});
  NV_REQUIRE_CLOSE(y.data(),
                   Tensor::from_vector(reference_bn(x, w, b, m, v, false, 1e-5f).y, x.shape()),
                   1e-5, 1e-6);
  REQUIRE(rm.to_vector() == m);
  REQUIRE(rv.to_vector() == v);
  // Training normalises with the batch statistics instead: a different result.
  Variable yt = ops::batch_norm(Variable(x), wv, bv, rm, rv, {true, 0.1f, 1e-5f});
  REQUIRE_FALSE(test::compare(yt.data(), y.data(), 1e-3, 1e-3).ok);
  REQUIRE(rm.to_vector() != m);
}

TEST_CASE("batch_norm: eval backward uses the statistics of its own forward", "[batch_norm]") {
  const int64_t C = 2;
  Tensor rm = Tensor::from_vector({0.0f, 1.0f}, {C}), rv = Tensor::from_vector({4.0f, 0.25f}, {C});
  Variable x(Tensor::from_vector({1, 2, 3, 4}, {2, C}), true);
  Variable w(Tensor::from_vector({2.0f, 3.0f}, {C}));
  Variable y = ops::batch_norm(x, w, Variable(), rm, rv, {false, 0.1f, 0.0f});
  // A training step in between rewrites the running statistics in place.
  ops::batch_norm(Variable(Tensor::from_vector({10, -10, 30, 50}, {2, C})), w, Variable(), rm, rv,
                  {true, 0.5f, 0.0f});
  REQUIRE(rv.to_vector() != std::vector<float>{4.0f, 0.25f});
  y.backward(Tensor::ones({2, C}));
  // dx = gamma / sqrt(var) with the forward's var: 2 / 2 = 1 and 3 / 0.5 = 6.
  REQUIRE(x.grad().to_vector() == std::vector<float>{1, 6, 1, 6});
}

TEST_CASE("batch_norm: statistics stay accurate for a large mean", "[batch_norm]") {
  // Values 100 +- 1: a float E[x^2] - E[x]^2 would lose about three digits of the variance.
  Generator g(14);
  Tensor x = test::random_tensor({8, 2, 16, 16}, g, 99.0f, 101.0f);
  Tensor rm = Tensor::zeros({2}), rv = Tensor::ones({2});
  Variable y = ops::batch_norm(Variable(x), Variable(), Variable(), rm, rv, {true, 1.0f, 1e-5f});
  BnReference ref = reference_bn(x, {}, {}, {}, {}, true, 1e-5f);
  NV_REQUIRE_CLOSE(y.data(), Tensor::from_vector(ref.y, x.shape()), 1e-4, 1e-4);
  const double M = 8 * 16 * 16;
  std::vector<float> var{float(ref.var[0] * M / (M - 1)), float(ref.var[1] * M / (M - 1))};
  NV_REQUIRE_CLOSE(rv, Tensor::from_vector(var, {2}), 1e-5, 0);
}

TEST_CASE("batch_norm: gradients match central differences in training and eval",
          "[batch_norm][gradcheck]") {
  Generator g(15);
  const int64_t C = 3;
  Tensor w = test::random_tensor({C}, g, 0.5f, 1.5f), b = test::random_tensor({C}, g);
  Tensor rm = Tensor::from_vector({0.1f, -0.2f, 0.3f}, {C});
  Tensor rv = Tensor::from_vector({0.5f, 1.5f, 1.0f}, {C});
  for (const Shape& shape : {Shape{2, C, 3, 4}, Shape{4, C, 5}, Shape{5, C}}) {
    INFO("input " << shape_str(shape));
    Tensor x = test::random_tensor(shape, g, -2.0f, 2.0f);
    for (bool training : {true, false}) {
      INFO("training " << training);
      Tensor rm_copy = rm.clone(), rv_copy = rv.clone();
      const ops::BatchNormOptions o{training, 0.1f, 1e-5f};
      test::check_gradients(
          [&](auto& v) { return ops::batch_norm(v[0], v[1], v[2], rm_copy, rv_copy, o); },
          {x, w, b});
    }
  }
}

TEST_CASE("batch_norm_relu: gradients match central differences", "[batch_norm][gradcheck]") {
  Generator g(16);
  const int64_t C = 3;
  Tensor x = balanced_input({4, C, 3, 2}, g);
  Tensor w = test::random_tensor({C}, g, 0.5f, 1.5f),
         b = test::random_tensor({C}, g, -0.05f, 0.05f);
  for (bool training : {true, false}) {
    INFO("training " << training);
    Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C});
    const ops::BatchNormOptions o{training, 0.1f, 1e-5f};
    auto f = [&](auto& v) { return ops::batch_norm_relu(v[0], v[1], v[2], rm, rv, o); };
    // Both signs survive the normalisation: the ReLU really cuts.
    const std::vector<Variable> inputs{Variable(x), Variable(w), Variable(b)};
    std::vector<float> y = f(inputs).data().to_vector();
    REQUIRE(std::count(y.begin(), y.end(), 0.0f) > 0);
    REQUIRE(std::count(y.begin(), y.end(), 0.0f) < static_cast<long>(y.size()));
    test::check_gradients(f, {x, w, b});
  }
}

TEST_CASE("batch_norm_relu: equals relu of batch_norm in value and every gradient",
          "[batch_norm]") {
  Generator g(17);
  const int64_t C = 16;
  const Shape shape{4, C, 32, 31};  // large enough for several threads
  Tensor x = test::random_tensor(shape, g, -2.0f, 2.0f);
  Tensor w = test::random_tensor({C}, g, -1.5f, 1.5f), b = test::random_tensor({C}, g);
  Tensor dy = test::random_tensor(shape, g);
  for (bool training : {true, false}) {
    INFO("training " << training);
    Tensor rm1 = test::random_tensor({C}, g), rv1 = test::random_tensor({C}, g, 0.5f, 2.0f);
    Tensor rm2 = rm1.clone(), rv2 = rv1.clone();
    const ops::BatchNormOptions o{training, 0.1f, 1e-5f};
    Variable x1(x.clone(), true), w1(w.clone(), true), b1(b.clone(), true);
    Variable x2(x.clone(), true), w2(w.clone(), true), b2(b.clone(), true);
    Variable fused = ops::batch_norm_relu(x1, w1, b1, rm1, rv1, o);
    Variable separate = ops::relu(ops::batch_norm(x2, w2, b2, rm2, rv2, o));
    NV_REQUIRE_CLOSE(fused.data(), separate.data(), 0, 0);
    NV_REQUIRE_CLOSE(rm1, rm2, 0, 0);
    NV_REQUIRE_CLOSE(rv1, rv2, 0, 0);
    fused.backward(dy);
    separate.backward(dy);
    NV_REQUIRE_CLOSE(x1.grad(), x2.grad(), 1e-5, 1e-6);
    NV_REQUIRE_CLOSE(w1.grad(), w2.grad(), 1e-5, 1e-6);
    NV_REQUIRE_CLOSE(b1.grad(), b2.grad(), 1e-5, 1e-6);
  }
}

TEST_CASE("batch_norm: without weight and bias the output is the normalised input",
          "[batch_norm]") {
  Generator g(18);
  Tensor x = test::random_tensor({4, 2, 3}, g);
  Tensor rm = Tensor::zeros({2}), rv = Tensor::ones({2});
  Variable xv(x, true);
  Variable y = ops::batch_norm(xv, Variable(), Variable(), rm, rv, {true, 0.1f, 1e-5f});
  NV_REQUIRE_CLOSE(y.data(),
                   Tensor::from_vector(reference_bn(x, {}, {}, {}, {}, true, 1e-5f).y, x.shape()),
                   1e-5, 1e-6);
  // Without running statistics training still works; their update is skipped.
  Variable y2 =
      ops::batch_norm(xv, Variable(), Variable(), Tensor(), Tensor(), {true, 0.1f, 1e-5f});
  NV_REQUIRE_CLOSE(y2.data(), y.data(), 0, 0);
  test::check_gradients(
      [&](auto& v) {
        return ops::batch_norm(v[0], Variable(), Variable(), rm, rv, {true, 0.1f, 1e-5f});
      },
      {x});
}

TEST_CASE("batch_norm: bad input gives errors that name the op and the shapes", "[batch_norm]") {
  Variable x(Tensor::zeros({2, 3, 4, 4}));
  Variable w3(Tensor::ones({3})), b3(Tensor::zeros({3})), w4(Tensor::ones({4}));
  Tensor rm3 = Tensor::zeros({3}), rv3 = Tensor::ones({3}), rm4 = Tensor::zeros({4});
  const ops::BatchNormOptions train{true, 0.1f, 1e-5f}, eval{false, 0.1f, 1e-5f};
  REQUIRE_THROWS_WITH(ops::batch_norm(Variable(Tensor::zeros({5})), w3, b3, rm3, rv3, train),
                      Catch::Contains("batch_norm: expected input (N, C, *) with at least 2 "
                                      "dimensions, got (5,)"));
  REQUIRE_THROWS_WITH(ops::batch_norm(x, w4, b3, rm3, rv3, train),
                      Catch::Contains("batch_norm: weight (4,) does not match the 3 channels of "
                                      "input (2, 3, 4, 4)"));
  REQUIRE_THROWS_WITH(ops::batch_norm_relu(x, w3, b3, rm4, rv3, eval),
                      Catch::Contains("batch_norm_relu: running_mean (4,) does not match the 3 "
                                      "channels"));
  REQUIRE_THROWS_WITH(ops::batch_norm(x, w3, b3, Tensor(), Tensor(), eval),
                      Catch::Contains("eval mode needs running_mean and running_var"));
  REQUIRE_THROWS_WITH(ops::batch_norm(x, w3, b3, rm3, Tensor(), train),
                      Catch::Contains("both be given"));
  REQUIRE_THROWS_WITH(
      ops::batch_norm(Variable(Tensor::zeros({1, 3})), w3, b3, rm3, rv3, train),
      Catch::Contains("expected more than 1 value per channel when training, got input (1, 3)"));
  // One value per channel is fine in eval mode.
  REQUIRE(ops::batch_norm(Variable(Tensor::zeros({1, 3})), w3, b3, rm3, rv3, eval).shape() ==
          Shape{1, 3});
}

TEST_CASE("cuda: batch_norm (train and eval, plain and fused with ReLU) matches the CPU",
          "[cuda][batch_norm]") {
  if (test::skip_without_gpu()) return;
  for (Shape s : {Shape{4, 5, 7, 9}, Shape{3, 64, 13}, Shape{8, 16}}) {
    const int64_t C = s[1];
    Tensor x = test::seeded_tensor(s, 14, -2.0f, 3.0f), w = test::seeded_tensor({C}, 15),
           b = test::seeded_tensor({C}, 16);
    for (bool training : {true, false}) {
      for (bool fused : {false, true}) {
        auto f = [=](auto& v, Device d) {
          Tensor rm = test::seeded_tensor({C}, 17).to(d),
                 rv = test::seeded_tensor({C}, 18, 0.5f, 2.0f).to(d);
          ops::BatchNormOptions o{training, 0.1f, 1e-5f};
          return fused ? ops::batch_norm_relu(v[0], v[1], v[2], rm, rv, o)
                       : ops::batch_norm(v[0], v[1], v[2], rm, rv, o);
        };
        test::check_backends(fmt::format("batch_norm train={} fused={}", training, fused), f,
                             {x, w, b}, 1e-4, 1e-4);
      }
    }
    // The running statistics are updated the same way.
    Tensor rmc = Tensor::zeros({C}), rvc = Tensor::ones({C});
    Tensor rmg = rmc.to(Device::cuda()), rvg = rvc.to(Device::cuda());
    ops::BatchNormOptions o{true, 0.1f, 1e-5f};
    ops::batch_norm(Variable(x), Variable(w), Variable(b), rmc, rvc, o);
    ops::batch_norm(Variable(x.to(Device::cuda())), Variable(w.to(Device::cuda())),
                    Variable(b.to(Device::cuda())), rmg, rvg, o);
    NV_REQUIRE_CLOSE(rmg.cpu(), rmc, 1e-5, 1e-6);
    NV_REQUIRE_CLOSE(rvg.cpu(), rvc, 1e-5, 1e-6);
  }
}
