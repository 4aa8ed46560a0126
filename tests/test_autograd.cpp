// autograd/: the tape, accumulation, no_grad, and the elementwise ops' gradients.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"

using namespace nextvit;

TEST_CASE("autograd: a diamond graph sums the gradients of both paths", "[autograd]") {
  Variable x(Tensor::from_vector({1, -2, 3}, {3}), true);
  Variable y = ops::relu(x);                 // (1, 0, 3)
  Variable z = ops::add(y, ops::mul(y, x));  // y + y*x
  Variable loss = ops::sum(z);
  loss.backward();
  // dz/dx = relu'(x) * (1 + x) + y = (1+1)+1, 0, (1+3)+3
  REQUIRE(x.grad().to_vector() == std::vector<float>{3, 0, 7});
  REQUIRE(loss.data().item() == 1 + 1 + 3 + 9);
}

TEST_CASE("autograd: a gradient shared by two inputs is never summed into in place", "[autograd]") {
  // add hands one gradient tensor to both of its inputs v and w; v then receives 2v from the
  // product too, summed in place only when nothing else (w's slot) still holds that tensor. The
  // graphs order the backward differently; the last one keeps w's slot alive longest.
  using Graph = std::function<Variable(const Variable& v, const Variable& w)>;
  const std::vector<std::pair<Graph, std::vector<float>>> graphs = {
      // d/dv = 1 + 2v, d/dw = 1: dx = 2 (1 + 4x) + 5 = 7 + 8x.
      {[](auto& v, auto& w) { return ops::add(ops::add(v, w), ops::mul(v, v)); }, {15, 23, 31}},
      {[](auto& v, auto& w) { return ops::add(ops::mul(v, v), ops::add(w, v)); }, {15, 23, 31}},
      // d/dw = 1 + 3: dx = 2 (1 + 4x) + 20 = 22 + 8x.
      {[](auto& v, auto& w) {
         return ops::add(ops::add(ops::add(v, w), ops::mul(v, v)), ops::scale(w, 3.0f));
       },
       {30, 38, 46}},
      {[](auto& v, auto& w) {
         return ops::add(ops::scale(w, 3.0f), ops::add(ops::mul(v, v), ops::add(w, v)));
       },
       {30, 38, 46}}};
  for (size_t i = 0; i < graphs.size(); ++i) {
    INFO("graph " << i);
    Variable x(Tensor::from_vector({1, 2, 3}, {3}), true);
    Variable v = ops::scale(x, 2.0f), w = ops::scale(x, 5.0f);
    ops::sum(graphs[i].first(v, w)).backward();
    CHECK(x.grad().to_vector() == graphs[i].second);
  }
}

TEST_CASE("autograd: leaves accumulate over backward calls until zero_grad", "[autograd]") {
  Variable x(Tensor::from_vector({2, 3}, {2}), true);
  ops::sum(ops::scale(x, 3.0f)).backward();
  ops::sum(ops::scale(x, 3.0f)).backward();
  REQUIRE(x.grad().to_vector() == std::vector<float>{6, 6});
  x.zero_grad();
  REQUIRE_FALSE(x.grad().defined());
  ops::mean(x).backward();
  REQUIRE(x.grad().to_vector() == std::vector<float>{0.5f, 0.5f});
}

TEST_CASE("autograd: no_grad records nothing, constants get no gradient", "[autograd]") {
  Variable x(Tensor::from_vector({1, 2}, {2}), true);
  Variable c(Tensor::from_vector({5, 5}, {2}), false);
  {
    NoGradGuard ng;
    Variable y = ops::mul(x, c);
    REQUIRE_FALSE(y.requires_grad());
    REQUIRE_THROWS_WITH(ops::sum(y).backward(), Catch::Contains("does not require a gradient"));
  }
  Variable y = ops::sum(ops::mul(x, c));
  REQUIRE(y.requires_grad());
  y.backward();
  REQUIRE(x.grad().to_vector() == std::vector<float>{5, 5});
  REQUIRE_FALSE(c.grad().defined());
}

TEST_CASE("autograd: backward needs a scalar or a matching gradient", "[autograd]") {
  Variable x(Tensor::from_vector({1, 2}, {2}), true);
  Variable y = ops::scale(x, 2.0f);
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("one-element"));
  REQUIRE_THROWS_WITH(y.backward(Tensor::ones({3})), Catch::Contains("does not match"));
  y.backward(Tensor::from_vector({1, 10}, {2}));
  REQUIRE(x.grad().to_vector() == std::vector<float>{2, 20});
}

TEST_CASE("autograd: a long chain does not overflow the stack", "[autograd]") {
  Variable x(Tensor::from_vector({1}, {1}), true);
  Variable y = x;
  for (int i = 0; i < 100000; ++i) y = ops::scale(y, 1.0f);
  ops::sum(y).backward();
  REQUIRE(x.grad().item() == 1.0f);
  // A graph dropped without backward() is freed without recursion as deep as the chain.
  Variable z = x;
  for (int i = 0; i < 1000000; ++i) z = ops::scale(z, 1.0f);
  z = Variable();
}

TEST_CASE("autograd: the graph keeps what backward closures saved, not every result",
          "[autograd]") {
  // Ten ops in a row on 4096 floats (16 KiB each). scale saves nothing and relu saves its
  // output, so of the twenty results the graph must keep only the ten relu outputs: a graph
  // that held every op's result (as ours did until 2026-12-04) keeps all twenty.
  constexpr int64_t n = 4096, bytes = n * 4;
  test::LiveBytes counter;  // first: every tensor below is freed before it
  Variable x(Tensor::full({n}, 1.0f), true);
  const int64_t before = counter.live();
  Variable h = x;
  for (int i = 0; i < 10; ++i) h = ops::relu(ops::scale(h, 1.5f));
  const int64_t held = counter.live() - before;
  INFO("bytes alive after the forward: " << held << " (one result: " << bytes << ")");
  CHECK(held >= 10 * bytes);
  CHECK(held < 11 * bytes);
  ops::sum(h).backward();
  // Backward frees the graph as it goes: h and the leaf's gradient are left.
  CHECK(counter.live() - before <= 2 * bytes + 64);
  const float expect = std::pow(1.5f, 10.0f);
  for (float g : x.grad().to_vector()) REQUIRE(g == Approx(expect).epsilon(1e-6));
}

TEST_CASE("autograd: an intermediate result the caller still holds keeps its value", "[autograd]") {
  Variable x(Tensor::from_vector({1, -2, 3}, {3}), true);
  Variable a = ops::scale(x, 2.0f);  // saved by nobody, held here
  Variable y = ops::relu(a);
  REQUIRE(a.data().to_vector() == std::vector<float>{2, -4, 6});
  REQUIRE_FALSE(a.is_leaf());
  REQUIRE(std::string(a.op()) == "scale");
  ops::sum(y).backward();
  REQUIRE(x.grad().to_vector() == std::vector<float>{2, 0, 2});
  REQUIRE(a.data().to_vector() == std::vector<float>{2, -4, 6});
}

TEST_CASE("autograd: backward_notifying reports live leaves and skips dropped ones", "[autograd]") {
  Variable w(Tensor::from_vector({2, 3}, {2}), true);
  Variable loss;
  {
    Variable temporary(Tensor::from_vector({1, 1}, {2}), true);  // dropped before backward
    loss = ops::sum(ops::mul(w, temporary));
  }
  std::vector<VariableImpl*> told;
  loss.backward_notifying([&](const Variable& leaf) { told.push_back(leaf.impl()); });
  REQUIRE(told == std::vector<VariableImpl*>{w.impl()});
  REQUIRE(w.grad().to_vector() == std::vector<float>{1, 1});
}

TEST_CASE("elementwise ops: gradients match central differences", "[autograd][gradcheck]") {
  Generator g(7);
  Tensor a = test::random_tensor({3, 5}, g), b = test::random_tensor({3, 5}, g);
  test::check_gradients([](auto& v) { return ops::add(v[0], v[1]); }, {a, b});
  test::check_gradients([](auto& v) { return ops::mul(v[0], v[1]); }, {a, b});
  test::check_gradients([](auto& v) { return ops::scale(v[0], -1.5f); }, {a});
  test::check_gradients([](auto& v) { return ops::sum(v[0]); }, {a});
  test::check_gradients([](auto& v) { return ops::mean(v[0]); }, {a});
  // Keep inputs away from ReLU's kink at zero by more than eps.
  Tensor r = test::random_tensor({4, 4}, g, 0.1f, 1.0f);
  std::vector<float> rv = r.to_vector();
  for (size_t i = 0; i < rv.size(); i += 2) rv[i] = -rv[i];
  test::check_gradients([](auto& v) { return ops::relu(v[0]); }, {Tensor::from_vector(rv, {4, 4})});
}

TEST_CASE("elementwise ops: shape and device errors name the op", "[autograd]") {
  Variable a(Tensor::zeros({2, 3})), b(Tensor::zeros({3, 2}));
  REQUIRE_THROWS_WITH(ops::add(a, b), Catch::Contains("add: shapes (2, 3) and (3, 2) differ"));
  Variable i(Tensor::from_vector_i64({1, 2}, {2}));
  REQUIRE_THROWS_WITH(ops::relu(i), Catch::Contains("relu: input 'x' must be f32"));
}

// The CUDA backend against the CPU (test::check_backends).
TEST_CASE("cuda: elementwise ops match the CPU", "[cuda]") {
  if (test::skip_without_gpu()) return;
  for (Shape s : {Shape{1}, Shape{7, 13}, Shape{3, 257, 129}}) {
    Tensor a = test::seeded_tensor(s, 2), b = test::seeded_tensor(s, 3);
    test::check_backends("add", [](auto& v, Device) { return ops::add(v[0], v[1]); }, {a, b});
    test::check_backends("mul", [](auto& v, Device) { return ops::mul(v[0], v[1]); }, {a, b});
    test::check_backends("scale", [](auto& v, Device) { return ops::scale(v[0], 0.3f); }, {a});
    test::check_backends("relu", [](auto& v, Device) { return ops::relu(v[0]); }, {a});
    test::check_backends(
        "sum", [](auto& v, Device) { return ops::sum(v[0]); }, {a}, 1e-4, 1e-3);
    test::check_backends("mean", [](auto& v, Device) { return ops::mean(v[0]); }, {a});
  }
}
