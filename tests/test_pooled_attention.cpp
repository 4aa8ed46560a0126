// kernels::*::pooled_attention_*: the fused E-MHSA attention out = softmax(scale q k^T) v.
// The CPU kernels against the composition of autograd ops they replace (ops::matmul,
// ops::scale, ops::softmax, ops::matmul), forward and backward; then the CUDA kernels against
// the CPU kernels (skipped without a GPU). The kernels' own index math is also checked without
// a GPU by the host emulation in test_cuda_emulation.cpp.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/pooled_attention.h"
#include "test_util.h"

using namespace nextvit;

namespace {

struct Case {
  int64_t heads, n, m, d;
};

// Puts back the GEMM family in use when it was made (the tests below force one, then another).
struct RestoreIsa {
  kernels::cpu::GemmIsa isa = kernels::cpu::gemm_isa();
  ~RestoreIsa() { kernels::cpu::set_gemm_isa(isa); }
};

// k (heads, m, d) -> k^T (heads, d, m), contiguous, on the host.
Tensor transposed(const Tensor& k) {
  return k.transpose(1, 2).contiguous();
}

}  // namespace

TEST_CASE("pooled attention: the CPU kernels match matmul + softmax + matmul", "[attention]") {
  // E-MHSA's case (49 keys, d 32), d 16, a single key, more keys than a warp, and an odd d
  // (the CPU kernel takes any); then the CPU backward's register blocks (pooled_attention.cpp):
  // exactly one 16-key block, and channels in a 32 + 16 block and in 16 + a rest of 4.
  for (const Case& c :
       {Case{4, 196, 49, 32}, Case{3, 37, 17, 16}, Case{2, 5, 1, 32}, Case{2, 9, 70, 16},
        Case{2, 6, 5, 7}, Case{2, 11, 16, 48}, Case{3, 8, 33, 20}}) {
    INFO("heads " << c.heads << " n " << c.n << " m " << c.m << " d " << c.d);
    Generator g(uint64_t(c.n * 100 + c.m));
    const float scale = 1.0f / std::sqrt(float(c.d));
    Tensor q = test::random_tensor({c.heads, c.n, c.d}, g, -3.0f, 3.0f);
    Tensor k = test::random_tensor({c.heads, c.m, c.d}, g);
    Tensor v = test::random_tensor({c.heads, c.m, c.d}, g);
    Tensor dout = test::random_tensor({c.heads, c.n, c.d}, g);

    // The composition, through autograd.
    Variable qv(q.clone(), true), ktv(transposed(k), true), vv(v.clone(), true);
    Variable p = ops::softmax(ops::scale(ops::matmul(qv, ktv), scale));
    Variable out = ops::matmul(p, vv);
    out.backward(dout);

    Tensor out_k = Tensor::empty(out.shape()), p_k = Tensor::empty(p.shape());
    kernels::cpu::pooled_attention_forward(c.heads, c.n, c.m, c.d, scale, q.data<float>(),
                                           k.data<float>(), v.data<float>(), out_k.data<float>(),
                                           p_k.data<float>());
    NV_REQUIRE_CLOSE(p_k, p.data(), 1e-5, 1e-6);
    NV_REQUIRE_CLOSE(out_k, out.data(), 1e-5, 1e-5);

    Tensor dq = Tensor::empty(q.shape()), dk = Tensor::empty(k.shape()),
           dv = Tensor::empty(v.shape());
    kernels::cpu::pooled_attention_backward(c.heads, c.n, c.m, c.d, scale, q.data<float>(),
                                            k.data<float>(), v.data<float>(), p_k.data<float>(),
                                            dout.data<float>(), dq.data<float>(), dk.data<float>(),
                                            dv.data<float>());
    NV_REQUIRE_CLOSE(dq, qv.grad(), 1e-4, 1e-5);
    NV_REQUIRE_CLOSE(dk, transposed(ktv.grad()), 1e-4, 1e-5);
    NV_REQUIRE_CLOSE(dv, vv.grad(), 1e-4, 1e-5);
  }
}

TEST_CASE("pooled attention: the AVX-512 forward gives the AVX2 forward's bits", "[attention]") {
  if (!kernels::cpu::gemm_isa_runs_here(kernels::cpu::GemmIsa::kAvx512)) {
    WARN("no AVX-512 on this CPU (or not an x86 build): nothing to compare");
    return;
  }
  const RestoreIsa restore;
  // E-MHSA's three stages at 224 x 224, 16-key and 16-channel blocks, a rest of channels,
  // more keys than one block, one key.
  for (const Case& c : {Case{6, 784, 49, 32}, Case{12, 196, 49, 32}, Case{24, 49, 49, 32},
                        Case{3, 37, 16, 16}, Case{2, 9, 70, 40}, Case{2, 6, 1, 20}}) {
    INFO("heads " << c.heads << " n " << c.n << " m " << c.m << " d " << c.d);
    Generator g(uint64_t(c.n * 10 + c.d));
    Tensor q = test::random_tensor({c.heads, c.n, c.d}, g, -3.0f, 3.0f);
    Tensor k = test::random_tensor({c.heads, c.m, c.d}, g);
    Tensor v = test::random_tensor({c.heads, c.m, c.d}, g);
    Tensor out[2], p[2];
    const kernels::cpu::GemmIsa isas[2] = {kernels::cpu::GemmIsa::kAvx2,
                                           kernels::cpu::GemmIsa::kAvx512};
    for (int i = 0; i < 2; ++i) {
      kernels::cpu::set_gemm_isa(isas[i]);
      out[i] = Tensor::empty({c.heads, c.n, c.d});
      p[i] = Tensor::empty({c.heads, c.n, c.m});
      kernels::cpu::pooled_attention_forward(c.heads, c.n, c.m, c.d, 0.17f, q.data<float>(),
                                             k.data<float>(), v.data<float>(), out[i].data<float>(),
                                             p[i].data<float>());
    }
    NV_REQUIRE_CLOSE(p[1], p[0], 0.0, 0.0);
    NV_REQUIRE_CLOSE(out[1], out[0], 0.0, 0.0);
  }
}

TEST_CASE("pooled attention: the CPU forward gives the bits of matmul, scale, softmax, matmul",
          "[attention]") {
  // The forward runs the GEMM on blocks of query rows (kernels/cpu/pooled_attention.cpp): every
  // score and output is summed in the order the ops' own products sum it, so the bits are the
  // composition's, on each x86 family and with the rows cut into blocks of 256 (784 = 3 x 256
  // + 16). (Products that take the GEMM's dot path, K >= 128 with few columns, would sum in
  // another order; E-MHSA's never do.)
  std::vector<kernels::cpu::GemmIsa> isas;
  for (auto isa : {kernels::cpu::GemmIsa::kAvx2, kernels::cpu::GemmIsa::kAvx512}) {
    if (kernels::cpu::gemm_isa_runs_here(isa)) isas.push_back(isa);
  }
  if (isas.empty()) {
    WARN("not an x86 build: the portable family is checked against the ops with a tolerance");
    return;
  }
  const RestoreIsa restore;
  for (auto isa : isas) {
    kernels::cpu::set_gemm_isa(isa);
    for (const Case& c :
         {Case{2, 784, 49, 32}, Case{3, 196, 49, 32}, Case{4, 49, 49, 32}, Case{2, 300, 49, 16}}) {
      INFO(kernels::cpu::gemm_isa_name(isa)
           << " heads " << c.heads << " n " << c.n << " m " << c.m << " d " << c.d);
      Generator g(uint64_t(c.n + c.d));
      const float scale = 1.0f / std::sqrt(float(c.d));
      Tensor q = test::random_tensor({c.heads, c.n, c.d}, g, -3.0f, 3.0f);
      Tensor k = test::random_tensor({c.heads, c.m, c.d}, g);
      Tensor v = test::random_tensor({c.heads, c.m, c.d}, g);
      Variable p =
          ops::softmax(ops::scale(ops::matmul(Variable(q), Variable(transposed(k))), scale));
      Variable out = ops::matmul(p, Variable(v));
      Tensor out_k = Tensor::empty(out.shape()), p_k = Tensor::empty(p.shape());
      kernels::cpu::pooled_attention_forward(c.heads, c.n, c.m, c.d, scale, q.data<float>(),
                                             k.data<float>(), v.data<float>(), out_k.data<float>(),
                                             p_k.data<float>());
      REQUIRE(p_k.to_vector() == p.data().to_vector());
      REQUIRE(out_k.to_vector() == out.data().to_vector());
    }
  }
}

TEST_CASE("pooled attention: the CPU kernels survive large scores", "[attention]") {
  // Scores around +-200: exp overflows unless the row maximum is subtracted first.
  const Case c{1, 3, 4, 2};
  Tensor q = Tensor::from_vector({10, 10, -10, 10, 0, 0}, {1, 3, 2});
  Tensor k = Tensor::from_vector({10, 10, 9, 10, -10, 0, 0, 1}, {1, 4, 2});
  Tensor v = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {1, 4, 2});
  Tensor out = Tensor::empty({1, 3, 2}), p = Tensor::empty({1, 3, 4});
  kernels::cpu::pooled_attention_forward(c.heads, c.n, c.m, c.d, 1.0f, q.data<float>(),
                                         k.data<float>(), v.data<float>(), out.data<float>(),
                                         p.data<float>());
  std::vector<float> pv = p.to_vector(), ov = out.to_vector();
  for (float x : pv) REQUIRE(std::isfinite(x));
  // Row 0: scores (200, 190, -100, 10): key 0 takes all but e^-10 of the weight.
  REQUIRE(pv[0] == Approx(1.0f / (1.0f + std::exp(-10.0f))).epsilon(1e-6));
  REQUIRE(ov[0] == Approx(1.0f + 2.0f * pv[1]).epsilon(1e-5));
  // Row 2 (q = 0): uniform weights, the mean of the values.
  REQUIRE(pv[8] == Approx(0.25f));
  REQUIRE(ov[4] == Approx(4.0f));
  REQUIRE(ov[5] == Approx(5.0f));
}

TEST_CASE("cuda: pooled attention kernels match the CPU", "[cuda][attention]") {
  if (!cuda_available()) {
    WARN("skipped: no CUDA device");
    return;
  }
#ifdef NEXTVIT_WITH_CUDA
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Device dev = Device::cuda();
  // E-MHSA of Next-ViT-S at 224 with batch 2 (stage 2: 16 heads x 784 queries, stage 3: 32 x
  // 196, stage 4: 64 x 49; always 49 keys, d 32), d 16 with odd sizes, one query and one key,
  // and the largest key counts (8 keys per lane, shared memory above 48 KB).
  for (const Case& c :
       {Case{16, 784, 49, 32}, Case{32, 196, 49, 32}, Case{64, 49, 49, 32}, Case{3, 37, 17, 16},
        Case{5, 65, 33, 16}, Case{1, 1, 1, 32}, Case{2, 300, 256, 32}, Case{2, 70, 200, 16},
        // 65 to 128 keys (four per lane); enough heads that the backward runs one split per
        // head, which then loops over every tile of its rows
        Case{3, 50, 100, 32}, Case{2, 40, 128, 16}, Case{265, 40, 9, 16}}) {
    INFO("heads " << c.heads << " n " << c.n << " m " << c.m << " d " << c.d);
    Generator g(uint64_t(c.heads * 7 + c.n + c.m));
    const float scale = 1.0f / std::sqrt(float(c.d));
    // q up to +-4: some rows' softmax is nearly one-hot.
    Tensor q = test::random_tensor({c.heads, c.n, c.d}, g, -4.0f, 4.0f);
    Tensor k = test::random_tensor({c.heads, c.m, c.d}, g);
    Tensor v = test::random_tensor({c.heads, c.m, c.d}, g);
    Tensor dout = test::random_tensor({c.heads, c.n, c.d}, g);
    Tensor out = Tensor::empty({c.heads, c.n, c.d}), p = Tensor::empty({c.heads, c.n, c.m});
    kernels::cpu::pooled_attention_forward(c.heads, c.n, c.m, c.d, scale, q.data<float>(),
                                           k.data<float>(), v.data<float>(), out.data<float>(),
                                           p.data<float>());
    Tensor dq = Tensor::empty(q.shape()), dk = Tensor::empty(k.shape()),
           dv = Tensor::empty(v.shape());
    kernels::cpu::pooled_attention_backward(
        c.heads, c.n, c.m, c.d, scale, q.data<float>(), k.data<float>(), v.data<float>(),
        p.data<float>(), dout.data<float>(), dq.data<float>(), dk.data<float>(), dv.data<float>());

    // Outputs poisoned with NaN: an element the kernel does not write fails the comparison.
    Tensor qd = q.to(dev), kd = k.to(dev), vd = v.to(dev), gd = dout.to(dev), pd = p.to(dev);
    Tensor out_d = Tensor::full(out.shape(), nan, dev), p_d = Tensor::full(p.shape(), nan, dev);
    kernels::cuda::pooled_attention_forward(c.heads, c.n, c.m, c.d, scale, qd.data<float>(),
                                            kd.data<float>(), vd.data<float>(), out_d.data<float>(),
                                            p_d.data<float>());
    NV_REQUIRE_CLOSE(p_d.cpu(), p, 1e-5, 1e-6);
    NV_REQUIRE_CLOSE(out_d.cpu(), out, 1e-5, 1e-5);
    Tensor dq_d = Tensor::full(q.shape(), nan, dev), dk_d = Tensor::full(k.shape(), nan, dev),
           dv_d = Tensor::full(v.shape(), nan, dev);
    kernels::cuda::pooled_attention_backward(c.heads, c.n, c.m, c.d, scale, qd.data<float>(),
                                             kd.data<float>(), vd.data<float>(), pd.data<float>(),
                                             gd.data<float>(), dq_d.data<float>(),
                                             dk_d.data<float>(), dv_d.data<float>());
    NV_REQUIRE_CLOSE(dq_d.cpu(), dq, 1e-4, 1e-5);
    NV_REQUIRE_CLOSE(dk_d.cpu(), dk, 1e-4, 1e-4);
    NV_REQUIRE_CLOSE(dv_d.cpu(), dv, 1e-4, 1e-4);
  }
  // Outside the CUDA kernel's range: a clear error, not a wrong result.
  REQUIRE_FALSE(kernels::pooled_attention_cuda_supported(64, 49));
  REQUIRE_FALSE(kernels::pooled_attention_cuda_supported(32, 257));
  Tensor buf = Tensor::full({64}, nan, dev);
  REQUIRE_THROWS_WITH(kernels::cuda::pooled_attention_forward(1, 1, 1, 64, 1.0f, buf.data<float>(),
                                                              buf.data<float>(), buf.data<float>(),
                                                              buf.data<float>(), buf.data<float>()),
                      Catch::Contains("head dimension 16 or 32"));
#endif
}
