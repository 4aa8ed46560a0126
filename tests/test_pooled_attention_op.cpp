// ops::pooled_attention, the fused attention E-MHSA runs, against the unfused reference
// (emhsa_attention_unfused: matmul, scale, softmax, matmul) at Next-ViT-S's E-MHSA shapes at
// 224x224 (always 49 pooled keys, head dimension 32): forward within 1e-5, gradients within
// 1e-4. Then E-MHSA itself with the fused op and without, the op's gradients by central
// differences, its errors, and the same on the (emulated) CUDA device at reduced sizes.
#include <cmath>
#include <set>
#include <string>
#include <tuple>

#include "kernels/pooled_attention.h"
#include "layers/e_mhsa.h"
#include "test_util.h"

using namespace nextvit;

namespace {

// (B, h, n, d) queries against (B, h, m, d) keys and values.
struct Case {
  int64_t batch, heads, n, m, d;
};

// Whether the graph behind v holds an op named `op`.
bool graph_has_op(const Variable& v, const std::string& op) {
  std::vector<const Node*> todo{&v.node()};
  std::set<const Node*> seen;
  while (!todo.empty()) {
    const Node* x = todo.back();
    todo.pop_back();
    if (x == nullptr || !seen.insert(x).second) continue;
    if (op == x->op) return true;
    for (const auto& in : x->inputs) todo.push_back(in.get());
  }
  return false;
}

// Fused and unfused attention on `dev` from the same inputs: outputs within 1e-5, the three
// input gradients within 1e-4 (relative, with an absolute floor set by the tensor's largest
// element, since entries near zero carry only rounding noise).
void check_fused_equals_unfused(const Case& c, Device dev) {
  INFO("B " << c.batch << " heads " << c.heads << " n " << c.n << " m " << c.m << " d " << c.d
            << " on " << dev.str());
  Generator g(uint64_t(c.heads * 1000 + c.n + c.m));
  const float scale = 1.0f / std::sqrt(float(c.d));
  // q up to +-3: many rows' softmax is far from uniform.
  const Tensor q = test::random_tensor({c.batch, c.heads, c.n, c.d}, g, -3.0f, 3.0f).to(dev);
  const Tensor k = test::random_tensor({c.batch, c.heads, c.m, c.d}, g).to(dev);
  const Tensor v = test::random_tensor({c.batch, c.heads, c.m, c.d}, g).to(dev);
  const Tensor dout = test::random_tensor({c.batch, c.heads, c.n, c.d}, g).to(dev);

  Variable qf(q, true), kf(k, true), vf(v, true), qu(q, true), ku(k, true), vu(v, true);
  Variable fused = ops::pooled_attention(qf, kf, vf, scale);
  Variable unfused = emhsa_attention_unfused(qu, ku, vu, scale);
  REQUIRE(std::string(fused.op()) == "pooled_attention");
  REQUIRE_FALSE(graph_has_op(unfused, "pooled_attention"));
  const Tensor ref = unfused.data().cpu();
  NV_REQUIRE_CLOSE(fused.data().cpu(), ref, 1e-5, 1e-5 * test::max_abs(ref));
  fused.backward(dout);
  unfused.backward(dout);
  using Pair = std::tuple<const char*, Variable, Variable>;
  for (const auto& [name, a, b] : {Pair{"dq", qf, qu}, Pair{"dk", kf, ku}, Pair{"dv", vf, vu}}) {
    INFO(name);
    const Tensor expected = b.grad().cpu();
    NV_REQUIRE_CLOSE(a.grad().cpu(), expected, 1e-4, 1e-4 * test::max_abs(expected));
  }
}

// Parameters drawn wider than Next-ViT's init (std 0.02) so that the scores spread and the
// softmax is far from uniform; a fixed seed gives both runs the same weights.
void randomize(Module& m, uint64_t seed) {
  Generator g(seed);
  for (auto& [name, p] : m.named_parameters()) fill_uniform(p.data(), g, -0.1f, 0.1f);
}

// E-MHSA in training mode with the fused attention and with the unfused reference, on the
// same weights and input: output, input gradient and every parameter gradient.
void check_emhsa_paths(int64_t dim, int64_t head_dim, int64_t sr, const Shape& x_shape, Device dev,
                       bool expect_fused) {
  INFO("E-MHSA dim " << dim << " head_dim " << head_dim << " sr " << sr << " x "
                     << shape_str(x_shape) << " on " << dev.str());
  EMHSA a(dim, head_dim, sr);
  randomize(a, 11);
  a.to(dev);
  Generator g(5);
  const Tensor x = test::random_tensor(x_shape, g).to(dev);
  const Tensor dy = test::random_tensor(x_shape, g).to(dev);

  auto run = [&](bool fused, Tensor& dx) {
    a.set_fused_attention(fused);
    a.zero_grad();
    Variable xv(x, true);
    Variable y = a.forward(xv);
    REQUIRE(graph_has_op(y, "pooled_attention") == (fused && expect_fused));
    y.backward(dy);
    dx = xv.grad().cpu();
    std::vector<Tensor> grads;
    for (const auto& [name, p] : a.named_parameters()) grads.push_back(p.grad().cpu());
    return std::pair{y.data().cpu(), grads};
  };
  Tensor dx_f, dx_u;
  const auto [y_f, grads_f] = run(true, dx_f);
  const auto [y_u, grads_u] = run(false, dx_u);
  NV_REQUIRE_CLOSE(y_f, y_u, 1e-5, 1e-5 * test::max_abs(y_u));
  NV_REQUIRE_CLOSE(dx_f, dx_u, 1e-4, 1e-4 * test::max_abs(dx_u));
  // k's bias only shifts each query's scores by a constant, to which softmax is blind: its
  // gradient is rounding noise around zero, so the absolute floor comes from the largest
  // gradient of all.
  double scale = 0;
  for (const Tensor& t : grads_u) scale = std::max(scale, test::max_abs(t));
  const auto names = a.named_parameters();
  for (size_t i = 0; i < grads_u.size(); ++i) {
    INFO("gradient of " << names[i].first);
    NV_REQUIRE_CLOSE(grads_f[i], grads_u[i], 1e-4, 1e-4 * test::max_abs(grads_u[i]) + 1e-6 * scale);
  }
}

}  // namespace

TEST_CASE("pooled_attention op: equals the unfused path at Next-ViT-S's E-MHSA shapes",
          "[attention]") {
  // Next-ViT-S at 224, batch 2: stage 2 (6 heads, 28x28 = 784 queries, sr 4), stage 3 (12
  // heads, 196 queries, sr 2), stage 4 (24 heads, 49 queries, sr 1): 49 keys, d 32 each time.
  // Then the fmnist model's d 16, and sizes the kernel handles off the model's path.
  for (const Case& c : {Case{2, 6, 784, 49, 32}, Case{2, 12, 196, 49, 32}, Case{2, 24, 49, 49, 32},
                        Case{2, 4, 49, 49, 16}, Case{1, 3, 37, 70, 7}, Case{1, 2, 5, 1, 32}}) {
    check_fused_equals_unfused(c, Device::cpu());
  }
}

TEST_CASE("pooled_attention op: E-MHSA uses it and equals the unfused E-MHSA",
          "[attention][model]") {
  // Next-ViT-S's three E-MHSA layers at 224 (mhsa channels 192, 384, 768), batch 2 (1 for the
  // last, to keep the test short).
  check_emhsa_paths(192, 32, 4, {2, 784, 192}, Device::cpu(), true);
  check_emhsa_paths(384, 32, 2, {2, 196, 384}, Device::cpu(), true);
  check_emhsa_paths(768, 32, 1, {1, 49, 768}, Device::cpu(), true);
}

TEST_CASE("pooled_attention op: gradients match central differences", "[attention]") {
  Generator g(8);
  const float scale = 0.4f;
  test::check_gradients(
      [&](const std::vector<Variable>& x) {
        return ops::pooled_attention(x[0], x[1], x[2], scale);
      },
      {test::random_tensor({2, 3, 5, 4}, g, -2.0f, 2.0f), test::random_tensor({2, 3, 7, 4}, g),
       test::random_tensor({2, 3, 7, 4}, g)});
}

TEST_CASE("pooled_attention op: records a backward only when a gradient is wanted", "[attention]") {
  Generator g(9);
  const Tensor q = test::random_tensor({1, 2, 6, 8}, g), k = test::random_tensor({1, 2, 3, 8}, g);
  Variable qv(q, true), kv(k, true), vv(k.clone(), true);
  // No graph (and so no saved probabilities) in no-grad mode or without an input that needs one.
  {
    NoGradGuard no_grad;
    Variable y = ops::pooled_attention(qv, kv, vv, 1.0f);
    REQUIRE(y.is_leaf());
    REQUIRE_FALSE(y.requires_grad());
  }
  REQUIRE(ops::pooled_attention(Variable(q), Variable(k), Variable(k), 1.0f).is_leaf());
  Variable y = ops::pooled_attention(qv, kv, vv, 1.0f);
  REQUIRE(y.requires_grad());
  REQUIRE(std::string(y.op()) == "pooled_attention");
}

TEST_CASE("pooled_attention op: refuses bad shapes with the shapes named", "[attention]") {
  auto attend = [](const Shape& q, const Shape& k, const Shape& v) {
    return ops::pooled_attention(Variable(Tensor::zeros(q)), Variable(Tensor::zeros(k)),
                                 Variable(Tensor::zeros(v)), 1.0f);
  };
  using Catch::Contains;
  REQUIRE_THROWS_WITH(attend({4}, {4}, {4}), Contains("rank >= 2") && Contains("q (4,)"));
  REQUIRE_THROWS_WITH(attend({2, 5, 8}, {3, 4, 8}, {3, 4, 8}),
                      Contains("leading (head) dimensions differ") && Contains("k (3, 4, 8)"));
  REQUIRE_THROWS_WITH(attend({2, 5, 8}, {2, 4, 16}, {2, 4, 8}),
                      Contains("head dimension 8") && Contains("k (2, 4, 16)"));
  REQUIRE_THROWS_WITH(attend({2, 5, 8}, {2, 4, 8}, {2, 3, 8}), Contains("same number of keys"));
  REQUIRE_THROWS_WITH(attend({2, 5, 8}, {2, 0, 8}, {2, 0, 8}),
                      Contains("does not take") && Contains("0 keys"));
  REQUIRE_FALSE(ops::pooled_attention_supported(Device::cpu(), 2, 5, 0, 8));
  REQUIRE(ops::pooled_attention_supported(Device::cpu(), 2, 5, 300, 64));
}

TEST_CASE("cuda: pooled_attention op equals the unfused path and the CPU", "[cuda][attention]") {
  if (!cuda_available()) {
    WARN("skipped: no CUDA device");
    return;
  }
  const Device dev = Device::cuda();
  // Next-ViT-S's stage-2 E-MHSA at batch 1 (6 heads, 784 queries, 49 keys, d 32), reduced
  // stage-3/4 shapes, and d 16.
  for (const Case& c : {Case{1, 6, 784, 49, 32}, Case{1, 2, 196, 49, 32}, Case{2, 3, 49, 49, 32},
                        Case{1, 2, 50, 49, 16}}) {
    check_fused_equals_unfused(c, dev);
  }
  // The device's op against the CPU's op.
  Generator g(4);
  const Tensor q = test::random_tensor({1, 2, 40, 32}, g, -3.0f, 3.0f);
  const Tensor k = test::random_tensor({1, 2, 49, 32}, g), v = test::random_tensor(k.shape(), g);
  const Tensor on_cpu = ops::pooled_attention(Variable(q), Variable(k), Variable(v), 0.5f).data();
  const Tensor on_dev =
      ops::pooled_attention(Variable(q.to(dev)), Variable(k.to(dev)), Variable(v.to(dev)), 0.5f)
          .data();
  NV_REQUIRE_CLOSE(on_dev.cpu(), on_cpu, 1e-5, 1e-5 * test::max_abs(on_cpu));
  // Outside the kernel's range: a clear error from the op, and E-MHSA does not ask.
  REQUIRE_FALSE(ops::pooled_attention_supported(dev, 2, 5, 4, 64));
  REQUIRE_FALSE(ops::pooled_attention_supported(dev, 2, 5, 257, 32));
  // Any number of heads: those beyond the grid's 65535 rows are looped over.
  REQUIRE(ops::pooled_attention_supported(dev, 65536, 5, 49, 32));
  REQUIRE(ops::pooled_attention_supported(dev, 65535, 5, 49, 32));
  const Tensor big = Tensor::zeros({1, 5, 64}, DType::F32, dev);
  REQUIRE_THROWS_WITH(ops::pooled_attention(Variable(big), Variable(big), Variable(big), 1.0f),
                      Catch::Contains("does not take") && Catch::Contains("dimension 64"));
  REQUIRE_THROWS_WITH(ops::pooled_attention(Variable(big), Variable(big.cpu()), Variable(big), 1.f),
                      Catch::Contains("different devices"));
}

TEST_CASE("cuda: the model's predicate agrees with the kernel's own limits", "[cuda][attention]") {
  if (!cuda_available()) {
    WARN("skipped: no CUDA device");
    return;
  }
#ifdef NEXTVIT_WITH_CUDA
  // With no query the kernel checks its limits and returns before touching memory, so null
  // pointers do for the cases it accepts.
  using Limits = std::tuple<int64_t, int64_t, int64_t>;
  for (const auto& [heads, m, d] : {Limits{65535, 49, 32}, Limits{65536, 49, 32},
                                    Limits{3, 256, 16}, Limits{3, 257, 16}, Limits{3, 49, 64}}) {
    INFO("heads " << heads << " m " << m << " d " << d);
    const bool ok = kernels::pooled_attention_cuda_supported(heads, 0, m, d);
    auto call = [&] {
      kernels::cuda::pooled_attention_forward(heads, 0, m, d, 1.0f, nullptr, nullptr, nullptr,
                                              nullptr, nullptr);
    };
    if (ok) {
      REQUIRE_NOTHROW(call());
    } else {
      REQUIRE_THROWS(call());
    }
  }
#endif
}

TEST_CASE("cuda: E-MHSA uses the fused op on the device and equals the unfused E-MHSA",
          "[cuda][attention][model]") {
  if (!cuda_available()) {
    WARN("skipped: no CUDA device");
    return;
  }
  // Reduced sizes: 64 tokens pooled by sr 2 to 16 keys, d 32; no pooling with d 16; head_dim
  // 64, which the CUDA kernel does not take, falls back to the unfused path.
  check_emhsa_paths(64, 32, 2, {2, 64, 64}, Device::cuda(), true);
  check_emhsa_paths(32, 16, 1, {1, 49, 32}, Device::cuda(), true);
  check_emhsa_paths(128, 64, 1, {1, 20, 128}, Device::cuda(), false);
}
