// E-MHSA's inference path on images (B, C, H, W) instead of tokens (B, N, C): the attention op
// on the heads' channel rows (ops::pooled_attention_channels), E-MHSA with its linear layers as
// 1x1 convolutions (EMHSA::forward_image), and NTB, which takes that path in eval on the CPU.
// Each is held against the token form it replaces, at Next-ViT-S's shapes and at odd ones.
#include <cmath>
#include <string>

#include "kernels/gemm.h"
#include "layers/ntb.h"
#include "test_util.h"

using namespace nextvit;

namespace {

// (B, heads * d, len) -> the token op's (B, heads, len, d).
Tensor heads_as_tokens(const Tensor& t, int64_t heads) {
  const int64_t B = t.size(0), d = t.size(1) / heads, len = t.size(2);
  return t.view({B, heads, d, len}).permute({0, 1, 3, 2}).contiguous();
}

// ...and back.
Tensor tokens_as_channels(const Tensor& t) {
  const int64_t B = t.size(0), heads = t.size(1), len = t.size(2), d = t.size(3);
  return t.permute({0, 1, 3, 2}).contiguous().view({B, heads * d, len});
}

// Parameters and running statistics drawn wide (so that scores spread and every BatchNorm
// moves its input), the same for a given seed.
void randomize(Module& m, uint64_t seed) {
  Generator g(seed);
  for (auto& [name, p] : m.named_parameters()) fill_uniform(p.data(), g, -0.1f, 0.1f);
  for (auto& [name, b] : m.named_buffers()) {
    if (name.find("running_mean") != std::string::npos) fill_uniform(*b, g, -0.5f, 0.5f);
    if (name.find("running_var") != std::string::npos) fill_uniform(*b, g, 0.5f, 1.5f);
  }
}

// The CPU's GEMM families: the query-lanes kernel has a form for each x86 one (on other CPUs
// the portable family, which takes the GEMM path). The family in use is put back at the end.
std::vector<kernels::cpu::GemmIsa> cpu_isas() {
  using kernels::cpu::GemmIsa;
  std::vector<GemmIsa> isas;
  for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2, GemmIsa::kPortable}) {
    if (kernels::cpu::gemm_isa_runs_here(isa)) isas.push_back(isa);
  }
  return isas;
}
struct RestoreIsa {
  kernels::cpu::GemmIsa isa = kernels::cpu::gemm_isa();
  ~RestoreIsa() { kernels::cpu::set_gemm_isa(isa); }
};

}  // namespace

TEST_CASE("pooled_attention_channels: the CPU kernel equals pooled_attention on the heads' tokens",
          "[attention]") {
  struct Dims {
    int64_t batch, channels, heads, n, m;
  };
  // Next-ViT-S's three E-MHSA layers at 224 (784 queries: three blocks of 256 and 16 more),
  // head dimension 16, then an odd head size with more keys than queries, and a single key;
  // then shapes that take each block size of the query-lanes kernel (AVX-512: 24 channels =
  // 16 + 8, 63 keys = 24 + 24 + 8 + 4 + 2 + 1, 40 keys = 24 + 16, 8 channels; AVX2: 63 keys =
  // 12 x 5 + 2 + 1, 40 = 12 x 3 + 4) and part-filled vectors of queries (23 = 16 + 7), and 65
  // keys, one more than it takes. Each on every GEMM family this CPU runs.
  for (const Dims& c :
       {Dims{1, 192, 6, 784, 49}, Dims{2, 384, 12, 196, 49}, Dims{1, 768, 24, 49, 49},
        Dims{2, 64, 4, 49, 49}, Dims{1, 21, 3, 37, 70}, Dims{1, 64, 2, 5, 1},
        Dims{1, 48, 2, 23, 63}, Dims{2, 16, 2, 40, 40}, Dims{1, 64, 2, 33, 65}}) {
    for (const kernels::cpu::GemmIsa isa : cpu_isas()) {
      RestoreIsa restore;
      kernels::cpu::set_gemm_isa(isa);
      INFO("B " << c.batch << " C " << c.channels << " heads " << c.heads << " n " << c.n << " m "
                << c.m << " " << kernels::cpu::gemm_isa_name(isa));
      Generator g(uint64_t(c.channels + c.n));
      const float scale = 1.0f / std::sqrt(float(c.channels / c.heads));
      const Tensor q = test::random_tensor({c.batch, c.channels, c.n}, g, -3.0f, 3.0f);
      const Tensor k = test::random_tensor({c.batch, c.channels, c.m}, g);
      const Tensor v = test::random_tensor({c.batch, c.channels, c.m}, g);
      NoGradGuard no_grad;
      const Variable out =
          ops::pooled_attention_channels(Variable(q), Variable(k), Variable(v), c.heads, scale);
      REQUIRE(out.is_leaf());  // the kernel itself, not the permuted composition
      const Tensor tokens = ops::pooled_attention(Variable(heads_as_tokens(q, c.heads)),
                                                  Variable(heads_as_tokens(k, c.heads)),
                                                  Variable(heads_as_tokens(v, c.heads)), scale)
                                .data();
      const Tensor expected = tokens_as_channels(tokens);
#if defined(__x86_64__)
      // Both forms sum each score and output from 0 in the same order with the GEMM's
      // micro-kernels (the transposes only change how the operands are packed), or with at most
      // 64 keys on AVX-512 or AVX2 in the query-lanes kernel, which keeps that order and
      // softmax_row's: the same bits.
      NV_REQUIRE_CLOSE(out.data(), expected, 0.0, 0.0);
#else
      NV_REQUIRE_CLOSE(out.data(), expected, 1e-6, 1e-6 * test::max_abs(expected));
#endif
    }
  }
}

TEST_CASE("pooled_attention_channels: zero and negative-zero queries (every score tied)",
          "[attention]") {
  // Every score is zero (the sums start from +0), so all keys tie for each query's maximum,
  // which the query-lanes kernel and the row softmax reach in different orders.
  Generator g(5);
  Tensor q = test::random_tensor({1, 64, 40}, g);
  float* qd = q.data<float>();
  for (int64_t i = 0; i < q.numel(); ++i) qd[i] = qd[i] < 0 ? -0.0f : 0.0f;
  const Tensor k = test::random_tensor({1, 64, 49}, g), v = test::random_tensor({1, 64, 49}, g);
  NoGradGuard no_grad;
  for (const kernels::cpu::GemmIsa isa : cpu_isas()) {
    RestoreIsa restore;
    kernels::cpu::set_gemm_isa(isa);
    INFO(kernels::cpu::gemm_isa_name(isa));
    const Tensor out =
        ops::pooled_attention_channels(Variable(q), Variable(k), Variable(v), 2, 0.25f).data();
    const Tensor tokens =
        ops::pooled_attention(Variable(heads_as_tokens(q, 2)), Variable(heads_as_tokens(k, 2)),
                              Variable(heads_as_tokens(v, 2)), 0.25f)
            .data();
#if defined(__x86_64__)
    NV_REQUIRE_CLOSE(out, tokens_as_channels(tokens), 0.0, 0.0);
#else
    NV_REQUIRE_CLOSE(out, tokens_as_channels(tokens), 1e-6, 1e-6);
#endif
  }
}

TEST_CASE(
    "pooled_attention_channels: with a gradient wanted it runs the token op, with its backward",
    "[attention]") {
  Generator g(21);
  const Tensor q = test::random_tensor({2, 8, 5}, g, -2.0f, 2.0f);
  const Tensor k = test::random_tensor({2, 8, 7}, g), v = test::random_tensor({2, 8, 7}, g);
  Variable qv(q, true), kv(k, true), vv(v, true);
  const Variable y = ops::pooled_attention_channels(qv, kv, vv, 2, 0.4f);
  REQUIRE(y.requires_grad());
  {
    NoGradGuard no_grad;
    const Tensor kernel =
        ops::pooled_attention_channels(Variable(q), Variable(k), Variable(v), 2, 0.4f).data();
    NV_REQUIRE_CLOSE(y.data(), kernel, 1e-6, 1e-6 * test::max_abs(kernel));
  }
  test::check_gradients(
      [&](const std::vector<Variable>& x) {
        return ops::pooled_attention_channels(x[0], x[1], x[2], 2, 0.4f);
      },
      {q, k, v});
}

TEST_CASE("pooled_attention_channels: refuses bad shapes with the shapes named", "[attention]") {
  auto attend = [](const Shape& q, const Shape& k, const Shape& v, int64_t heads) {
    return ops::pooled_attention_channels(Variable(Tensor::zeros(q)), Variable(Tensor::zeros(k)),
                                          Variable(Tensor::zeros(v)), heads, 1.0f);
  };
  using Catch::Contains;
  REQUIRE_THROWS_WITH(attend({2, 8}, {2, 8}, {2, 8}, 2),
                      Contains("expected q (B, C, n)") && Contains("q (2, 8)"));
  REQUIRE_THROWS_WITH(attend({2, 8, 5}, {2, 4, 3}, {2, 4, 3}, 2),
                      Contains("q's B and C") && Contains("k (2, 4, 3)"));
  REQUIRE_THROWS_WITH(attend({2, 8, 5}, {2, 8, 3}, {2, 8, 4}, 2), Contains("v (2, 8, 4)"));
  REQUIRE_THROWS_WITH(attend({2, 8, 5}, {2, 8, 3}, {2, 8, 3}, 3),
                      Contains("8 channels are not 3 heads"));
  REQUIRE_THROWS_WITH(attend({2, 8, 5}, {2, 8, 0}, {2, 8, 0}, 2), Contains("0 keys"));
}

TEST_CASE("E-MHSA on images equals the residual plus E-MHSA on tokens", "[attention][model]") {
  struct Layer {
    int64_t dim, sr, batch, h, w;
  };
  // Next-ViT-S's three E-MHSA layers at 224, then 30 tokens that pool (sr 2) to 7 keys with two
  // left over, and head size 16.
  for (const Layer& l : {Layer{192, 4, 1, 28, 28}, Layer{384, 2, 2, 14, 14}, Layer{768, 1, 1, 7, 7},
                         Layer{64, 2, 2, 5, 6}}) {
    for (const int64_t head_dim : {int64_t(32), int64_t(16)}) {
      if (l.dim > 64 && head_dim == 16) continue;
      INFO("dim " << l.dim << " head_dim " << head_dim << " sr " << l.sr << " x (" << l.batch
                  << ", " << l.h << ", " << l.w << ")");
      EMHSA a(l.dim, head_dim, l.sr);
      randomize(a, 13);
      a.eval();
      Generator g(7);
      const Tensor x = test::random_tensor({l.batch, l.dim, l.h, l.w}, g);
      const Tensor r = test::random_tensor(x.shape(), g);
      NoGradGuard no_grad;
      const Tensor got = a.forward_image(Variable(x), Variable(r)).data();
      const int64_t n = l.h * l.w;
      const Variable tokens = ops::transpose(ops::reshape(Variable(x), {l.batch, l.dim, n}), 1, 2);
      const Variable attn = ops::transpose(a.forward(tokens), 1, 2);
      const Tensor expected =
          ops::add(Variable(r), ops::reshape(attn, {l.batch, l.dim, l.h, l.w})).data();
      NV_REQUIRE_CLOSE(got, expected, 1e-5, 1e-5 * test::max_abs(expected));
    }
  }
}

TEST_CASE("NTB: inference on the CPU equals the block's formula on tokens", "[attention][model]") {
  // Next-ViT-S's stage-3 NTB at 224 (384 -> 512 channels at 14 x 14, sr 2), and a small one
  // without pooling.
  for (const auto& [o, side] : {std::pair{NTBOptions{384, 512, 1, 2}, int64_t(14)},
                                std::pair{NTBOptions{32, 128, 2, 1}, int64_t(10)}}) {
    INFO("NTB " << o.in_channels << " -> " << o.out_channels << " at " << side);
    Generator gen(3);
    NTB b(o, &gen);
    randomize(b, 17);
    b.eval();
    Generator g(9);
    const Tensor input = test::random_tensor({2, o.in_channels, side, side}, g);
    NoGradGuard no_grad;
    const Tensor got = b.forward(Variable(input)).data();
    // The block as its header writes it, on tokens, with drop-path the identity in eval.
    Variable x = b.patch_embed->forward(Variable(input));
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const Variable tokens = ops::transpose(ops::reshape(b.norm1->forward(x), {B, C, H * W}), 1, 2);
    x = ops::add(x, ops::reshape(ops::transpose(b.e_mhsa->forward(tokens), 1, 2), {B, C, H, W}));
    Variable y = b.projection->forward(x);
    y = ops::add(y, b.mhca->forward(y));
    x = ops::concat({x, y}, 1);
    const Tensor expected = ops::add(x, b.mlp->forward(b.norm2->forward(x))).data();
    NV_REQUIRE_CLOSE(got, expected, 1e-5, 1e-5 * test::max_abs(expected));
  }
}
