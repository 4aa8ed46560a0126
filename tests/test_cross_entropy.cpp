// ops::cross_entropy with label smoothing: the loss against a double reference and PyTorch
// values, gradients by central differences, large logits, and the errors for bad input.
#include <cmath>

#include "test_util.h"

using namespace nextvit;

namespace {

// Mean over rows of -sum_j q_j log softmax(x)_j, q = (1 - s) onehot + s / K, in double.
double reference_loss(const Tensor& logits, const std::vector<int64_t>& t, double s) {
  const int64_t n = logits.size(0), k = logits.size(1);
  std::vector<float> x = logits.to_vector();
  double total = 0;
  for (int64_t r = 0; r < n; ++r) {
    double max = x[r * k];
    for (int64_t j = 0; j < k; ++j) max = std::max(max, double(x[r * k + j]));
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += std::exp(x[r * k + j] - max);
    const double lse = max + std::log(sum);
    for (int64_t j = 0; j < k; ++j) {
      const double q = (j == t[r] ? 1 - s : 0) + s / k;
      total -= q * (x[r * k + j] - lse);
    }
  }
  return total / n;
}

// x[r, j] = 3 sin(1.7 (5 r + j) + 0.3), (3, 5): the logits of the PyTorch constants below.
Tensor pytorch_logits() {
  std::vector<float> v(15);
  for (int i = 0; i < 15; ++i) v[i] = static_cast<float>(std::sin(1.7 * i + 0.3) * 3);
  return Tensor::from_vector(v, {3, 5});
}

}  // namespace

TEST_CASE("cross_entropy: the mean loss matches a double reference", "[cross_entropy]") {
  Generator g(51);
  for (float s : {0.0f, 0.1f, 0.5f, 1.0f}) {
    for (int64_t k : {1, 2, 10, 1000}) {
      INFO("smoothing " << s << " classes " << k);
      const int64_t n = k == 1000 ? 64 : 7;  // 64 x 1000: split across threads
      Tensor x = test::random_tensor({n, k}, g, -4.0f, 4.0f);
      std::vector<int64_t> t(n);
      for (auto& v : t) v = g.randint(k);
      Variable loss = ops::cross_entropy(Variable(x), Tensor::from_vector_i64(t, {n}), s);
      REQUIRE(loss.shape() == Shape{});
      REQUIRE(loss.data().item() == Approx(reference_loss(x, t, s)).epsilon(1e-5).margin(1e-6));
    }
  }
}

TEST_CASE("cross_entropy: loss and gradient equal PyTorch's with label smoothing",
          "[cross_entropy]") {
  // From torch.nn.functional.cross_entropy(x, torch.tensor([2, 0, 4]), label_smoothing=s) and
  // x.grad after loss.backward(), x as in pytorch_logits(), torch 2.x float32.
  struct Expected {
    float s, loss;
    std::vector<float> grad;
  };
  const std::vector<Expected> cases{
      {0.0f,
       3.98451734f,
       {0.030029669f, 0.18933491f, -0.33080867f, 0.0012181476f, 0.11022593f, -0.25933066f,
        0.00091417076f, 0.0043695578f, 0.23636381f, 0.01768312f, 0.00083565194f, 0.026295867f,
        0.29983675f, 0.0050891628f, -0.33205745f}},
      {0.1f,
       3.90589595f,
       {0.023362998f, 0.18266821f, -0.30414197f, -0.0054485188f, 0.10355924f, -0.23266399f,
        -0.005752496f, -0.0022971095f, 0.22969711f, 0.011016451f, -0.0058310144f, 0.019629197f,
        0.29317006f, -0.0015775041f, -0.30539075f}},
      {1.0f,
       3.19830489f,
       {-0.036637001f, 0.12266824f, -0.064141981f, -0.065448523f, 0.043559261f, 0.0073360004f,
        -0.065752499f, -0.062297113f, 0.16969715f, -0.048983552f, -0.06583102f, -0.040370803f,
        0.23317009f, -0.061577506f, -0.065390758f}}};
  Tensor targets = Tensor::from_vector_i64({2, 0, 4}, {3});
  for (const Expected& e : cases) {
    INFO("label_smoothing " << e.s);
    Variable x(pytorch_logits(), true);
    Variable loss = ops::cross_entropy(x, targets, e.s);
    REQUIRE(loss.data().item() == Approx(e.loss).epsilon(1e-6));
    loss.backward();
    NV_REQUIRE_CLOSE(x.grad(), Tensor::from_vector(e.grad, {3, 5}), 1e-5, 1e-7);
  }
  // Logits of +-1e4 stay finite; torch gives 5009 for these.
  Variable big(Tensor::from_vector({1e4f, 0.0f, -1e4f, 50.0f, 60.0f, 70.0f}, {2, 3}), true);
  Variable loss = ops::cross_entropy(big, Tensor::from_vector_i64({1, 0}, {2}), 0.2f);
  REQUIRE(loss.data().item() == Approx(5009.0f).epsilon(1e-6));
  loss.backward();
  for (float v : big.grad().to_vector()) REQUIRE(std::isfinite(v));
}

TEST_CASE("cross_entropy: gradients match central differences", "[cross_entropy][gradcheck]") {
  Generator g(52);
  Tensor x = test::random_tensor({4, 6}, g, -2.0f, 2.0f);
  Tensor t = Tensor::from_vector_i64({5, 0, 3, 3}, {4});
  for (float s : {0.0f, 0.3f}) {
    INFO("label_smoothing " << s);
    test::check_gradients([&](auto& v) { return ops::cross_entropy(v[0], t, s); }, {x},
                          {1e-2f, 1e-2, 1e-4, 0, {}});
  }
  // The scalar gradient of the loss scales the logits' gradient.
  Variable a(x, true), b(x.clone(), true);
  ops::cross_entropy(a, t, 0.1f).backward(Tensor::scalar(2.5f));
  ops::cross_entropy(b, t, 0.1f).backward();
  std::vector<float> ga = a.grad().to_vector(), gb = b.grad().to_vector();
  for (size_t i = 0; i < ga.size(); ++i) REQUIRE(ga[i] == Approx(2.5f * gb[i]).epsilon(1e-6));
}

TEST_CASE("cross_entropy: bad input gives errors that name the op and the shapes",
          "[cross_entropy]") {
  Variable x(Tensor::zeros({3, 5}));
  REQUIRE_THROWS_WITH(ops::cross_entropy(x, Tensor::from_vector_i64({1, 5, 0}, {3})),
                      Catch::Contains("cross_entropy: target 5 of sample 1 is out of range for 5 "
                                      "classes (logits (3, 5))"));
  REQUIRE_THROWS_WITH(ops::cross_entropy(x, Tensor::from_vector_i64({1, 2, -1}, {3})),
                      Catch::Contains("target -1 of sample 2 is out of range"));
  REQUIRE_THROWS_WITH(ops::cross_entropy(x, Tensor::from_vector({1, 2, 3}, {3})),
                      Catch::Contains("cross_entropy: expected i64 targets (3) for logits (3, 5), "
                                      "got f32 (3,)"));
  REQUIRE_THROWS_WITH(ops::cross_entropy(x, Tensor::from_vector_i64({1, 2}, {2})),
                      Catch::Contains("expected i64 targets (3) for logits (3, 5), got i64 (2,)"));
  REQUIRE_THROWS_WITH(ops::cross_entropy(Variable(Tensor::zeros({3, 5, 1})),
                                         Tensor::from_vector_i64({1, 2, 3}, {3})),
                      Catch::Contains("cross_entropy: expected logits (N, K) with K > 0, got "
                                      "(3, 5, 1)"));
  REQUIRE_THROWS_WITH(ops::cross_entropy(x, Tensor::from_vector_i64({1, 2, 3}, {3}), 1.5f),
                      Catch::Contains("cross_entropy: label_smoothing must be in [0, 1], got 1.5"));
  REQUIRE_THROWS_WITH(ops::cross_entropy(x, Tensor()),
                      Catch::Contains("cross_entropy: targets are undefined"));
}

// The CUDA backend against the CPU (test::check_backends).
TEST_CASE("cuda: cross-entropy matches the CPU", "[cuda]") {
  if (test::skip_without_gpu()) return;
  Tensor logits = test::seeded_tensor({6, 11}, 22, -3.0f, 3.0f);
  Tensor targets = Tensor::from_vector_i64({0, 10, 3, 3, 7, 1}, {6});
  test::check_backends(
      "cross_entropy",
      [targets](auto& v, Device d) { return ops::cross_entropy(v[0], targets.to(d), 0.1f); },
      {logits});
}
