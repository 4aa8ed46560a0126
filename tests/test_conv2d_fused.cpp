// ops::conv2d_eval_fused (eval-mode Conv -> BatchNorm -> ReLU -> residual add in the
// convolution's output pass) against the separate ops it replaces, on every path of the CPU
// forward (1x1 read in place, small images read in column blocks and scattered, im2col, implicit
// GEMM, the direct grouped kernel), batch 1 and > 1, one and two threads; its fallback when a
// gradient is recorded; and whole models in eval mode, as trained and folded for deployment.
#include <omp.h>

#include "autograd/ops.h"
#include "kernels/gemm.h"
#include "models/deploy.h"
#include "models/nextvit.h"
#include "test_util.h"

using namespace nextvit;

namespace {

struct Case {
  int64_t n, cin, h, w, cout, k, stride, pad, groups;
};

// Random BatchNorm parameters and statistics for `c` channels (variances in [0.5, 2)).
ops::EvalBatchNorm random_bn(int64_t c, uint64_t seed) {
  ops::EvalBatchNorm bn;
  bn.weight = Variable(test::seeded_tensor({c}, seed, 0.5f, 1.5f));
  bn.bias = Variable(test::seeded_tensor({c}, seed + 1));
  bn.running_mean = test::seeded_tensor({c}, seed + 2);
  bn.running_var = test::seeded_tensor({c}, seed + 3, 0.5f, 2.0f);
  return bn;
}

}  // namespace

TEST_CASE("conv2d_eval_fused: equals conv2d, batch_norm (eval) and relu run separately",
          "[conv2d][batch_norm]") {
  const std::vector<Case> cases = {
      {1, 8, 16, 16, 12, 1, 1, 0, 1},   // 1x1 read in place (256 positions)
      {3, 16, 7, 7, 24, 1, 1, 0, 1},    // 1x1, small images in column blocks, scattered
      {2, 3, 9, 11, 8, 3, 2, 1, 1},     // im2col, stride 2
      {2, 4, 30, 30, 16, 3, 1, 1, 1},   // stride 1, wide rows: implicit GEMM on AVX-512
      {2, 32, 6, 6, 32, 3, 1, 1, 4},    // grouped 3x3 (MHCA)
      {1, 16, 14, 14, 16, 3, 1, 1, 1},  // batch 1, im2col
  };
  const int saved = omp_get_max_threads();
  uint64_t seed = 10;
  for (const Case& c : cases) {
    const Variable x(test::seeded_tensor({c.n, c.cin, c.h, c.w}, seed++));
    const Variable w(test::seeded_tensor({c.cout, c.cin / c.groups, c.k, c.k}, seed++));
    const Variable b(test::seeded_tensor({c.cout}, seed++));
    const ops::EvalBatchNorm bn = random_bn(c.cout, seed += 4);
    const auto opt = ops::Conv2dOptions::make(c.stride, c.pad, c.groups);
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      for (int flags = 0; flags < 16; ++flags) {
        const bool with_bias = flags & 1, with_bn = flags & 2, relu = flags & 4;
        const bool with_residual = flags & 8;
        const Variable& bias = with_bias ? b : Variable();
        INFO("case n=" << c.n << " cin=" << c.cin << " " << c.h << "x" << c.w << " k=" << c.k
                       << " stride=" << c.stride << " groups=" << c.groups << " threads=" << threads
                       << " bias=" << with_bias << " bn=" << with_bn << " relu=" << relu
                       << " residual=" << with_residual);
        NoGradGuard no_grad;
        Variable expected = ops::conv2d(x, w, bias, opt);
        if (with_bn) {
          ops::BatchNormOptions o;
          o.eps = bn.eps;
          expected =
              ops::batch_norm(expected, bn.weight, bn.bias, bn.running_mean, bn.running_var, o);
        }
        if (relu) expected = ops::relu(expected);
        const Variable residual(test::seeded_tensor(expected.shape(), seed + 7));
        if (with_residual) expected = ops::add(residual, expected);
        const Variable fused = ops::conv2d_eval_fused(x, w, bias, opt, with_bn ? &bn : nullptr,
                                                      relu, with_residual ? residual : Variable());
        NV_REQUIRE_CLOSE(fused.data(), expected.data(), 1e-6, 1e-7);
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("conv2d_eval_fused: records the separate ops when a gradient is wanted",
          "[conv2d][batch_norm]") {
  const Variable x(test::seeded_tensor({2, 4, 5, 5}, 1), /*requires_grad=*/true);
  const Variable w(test::seeded_tensor({6, 4, 3, 3}, 2), /*requires_grad=*/true);
  const ops::EvalBatchNorm bn = random_bn(6, 3);
  const auto opt = ops::Conv2dOptions::make(1, 1, 1);
  const Variable r(test::seeded_tensor({2, 6, 5, 5}, 4), /*requires_grad=*/true);
  const Variable g(test::seeded_tensor({2, 6, 5, 5}, 5));
  Variable fused = ops::conv2d_eval_fused(x, w, Variable(), opt, &bn, true, r);
  REQUIRE(fused.requires_grad());
  ops::sum(ops::mul(fused, g)).backward();
  const Tensor dx = x.grad(), dw = w.grad(), dr = r.grad();
  x.zero_grad();
  w.zero_grad();
  r.zero_grad();
  ops::BatchNormOptions o;
  Variable separate =
      ops::add(r, ops::relu(ops::batch_norm(ops::conv2d(x, w, Variable(), opt), bn.weight, bn.bias,
                                            bn.running_mean, bn.running_var, o)));
  ops::sum(ops::mul(separate, g)).backward();
  NV_REQUIRE_CLOSE(fused.data(), separate.data(), 0.0, 0.0);
  NV_REQUIRE_CLOSE(dx, x.grad(), 0.0, 0.0);
  NV_REQUIRE_CLOSE(dw, w.grad(), 0.0, 0.0);
  NV_REQUIRE_CLOSE(dr, r.grad(), 0.0, 0.0);
}

TEST_CASE("conv2d_eval_fused: a residual of another shape is refused", "[conv2d]") {
  const Variable x(test::seeded_tensor({1, 4, 5, 5}, 1));
  const Variable w(test::seeded_tensor({6, 4, 1, 1}, 2));
  const Variable r(test::seeded_tensor({1, 4, 5, 5}, 3));  // the input's shape, not the output's
  NoGradGuard no_grad;
  REQUIRE_THROWS_WITH(
      ops::conv2d_eval_fused(x, w, Variable(), ops::Conv2dOptions::make(1, 0, 1), nullptr, false,
                             r),
      Catch::Contains("residual of shape (1, 4, 5, 5) cannot be added to the output of shape "
                      "(1, 6, 5, 5)"));
}

TEST_CASE("conv2d_eval_fused: an input BatchNorm gives the bits of batch_norm then the conv",
          "[conv2d][batch_norm]") {
  // The pre-norm of a block feeding a 1x1 convolution, applied by the GEMM's packers, on every
  // path a 1x1 convolution takes: read in place (blocked, several K blocks), small images
  // in column blocks, the transposed GEMM (196 positions), the dot GEMM (49 positions, K = 256),
  // grouped; with and without the output BatchNorm, ReLU and residual; every GEMM ISA; one and
  // two threads. A 3x3 convolution with an input BatchNorm runs the BatchNorm op first.
  const std::vector<Case> cases = {
      {1, 200, 20, 20, 40, 1, 1, 0, 1},  // in place, blocked, K in two blocks
      {3, 16, 7, 7, 24, 1, 1, 0, 1},     // small images in column blocks
      {1, 64, 14, 14, 128, 1, 1, 0, 1},  // transposed GEMM
      {1, 256, 7, 7, 64, 1, 1, 0, 1},    // dot GEMM
      {2, 32, 10, 10, 16, 1, 1, 0, 2},   // grouped 1x1
      {2, 8, 9, 9, 16, 3, 1, 1, 1},      // 3x3: the BatchNorm op first
  };
  const int saved = omp_get_max_threads();
  const kernels::cpu::GemmIsa saved_isa = kernels::cpu::gemm_isa();
  uint64_t seed = 200;
  for (const Case& c : cases) {
    const Variable x(test::seeded_tensor({c.n, c.cin, c.h, c.w}, seed++, -2.0f, 2.0f));
    const Variable w(test::seeded_tensor({c.cout, c.cin / c.groups, c.k, c.k}, seed++));
    const Variable b(test::seeded_tensor({c.cout}, seed++));
    const ops::EvalBatchNorm in_bn = random_bn(c.cin, seed += 4);
    const ops::EvalBatchNorm out_bn = random_bn(c.cout, seed += 4);
    const auto opt = ops::Conv2dOptions::make(c.stride, c.pad, c.groups);
    for (kernels::cpu::GemmIsa isa : {kernels::cpu::GemmIsa::kAvx512, kernels::cpu::GemmIsa::kAvx2,
                                      kernels::cpu::GemmIsa::kPortable}) {
      if (!kernels::cpu::gemm_isa_runs_here(isa)) continue;
      kernels::cpu::set_gemm_isa(isa);
      for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        for (int flags = 0; flags < 4; ++flags) {
          const bool with_out_bn = flags & 1, with_residual = flags & 2;
          INFO("case n=" << c.n << " cin=" << c.cin << " " << c.h << "x" << c.w << " k=" << c.k
                         << " groups=" << c.groups << " isa=" << kernels::cpu::gemm_isa_name(isa)
                         << " threads=" << threads << " out_bn=" << with_out_bn
                         << " residual=" << with_residual);
          NoGradGuard no_grad;
          ops::BatchNormOptions o;
          const Variable normed = ops::batch_norm(x, in_bn.weight, in_bn.bias, in_bn.running_mean,
                                                  in_bn.running_var, o);
          const Variable residual(test::seeded_tensor({c.n, c.cout, c.h, c.w}, seed + 9));
          const Variable r = with_residual ? residual : Variable();
          const ops::EvalBatchNorm* bn = with_out_bn ? &out_bn : nullptr;
          const Variable expected = ops::conv2d_eval_fused(normed, w, b, opt, bn, true, r);
          const Variable fused = ops::conv2d_eval_fused(x, w, b, opt, bn, true, r, &in_bn);
          NV_REQUIRE_CLOSE(fused.data(), expected.data(), 0.0, 0.0);
        }
      }
    }
  }
  kernels::cpu::set_gemm_isa(saved_isa);
  omp_set_num_threads(saved);
}

TEST_CASE("conv2d_eval_fused: an input BatchNorm records the separate ops for a gradient",
          "[conv2d][batch_norm]") {
  const Variable x(test::seeded_tensor({2, 6, 5, 5}, 1), /*requires_grad=*/true);
  const Variable w(test::seeded_tensor({4, 6, 1, 1}, 2), /*requires_grad=*/true);
  ops::EvalBatchNorm in_bn = random_bn(6, 3);
  in_bn.weight = Variable(in_bn.weight.data(), /*requires_grad=*/true);
  const auto opt = ops::Conv2dOptions::make(1, 0, 1);
  const Variable g(test::seeded_tensor({2, 4, 5, 5}, 5));
  Variable fused = ops::conv2d_eval_fused(x, w, Variable(), opt, nullptr, true, Variable(), &in_bn);
  REQUIRE(fused.requires_grad());
  ops::sum(ops::mul(fused, g)).backward();
  const Tensor dx = x.grad(), dw = w.grad(), dgamma = in_bn.weight.grad();
  x.zero_grad();
  w.zero_grad();
  in_bn.weight.zero_grad();
  ops::BatchNormOptions o;
  Variable separate = ops::relu(ops::conv2d(
      ops::batch_norm(x, in_bn.weight, in_bn.bias, in_bn.running_mean, in_bn.running_var, o), w,
      Variable(), opt));
  ops::sum(ops::mul(separate, g)).backward();
  NV_REQUIRE_CLOSE(fused.data(), separate.data(), 0.0, 0.0);
  NV_REQUIRE_CLOSE(dx, x.grad(), 0.0, 0.0);
  NV_REQUIRE_CLOSE(dw, w.grad(), 0.0, 0.0);
  NV_REQUIRE_CLOSE(dgamma, in_bn.weight.grad(), 0.0, 0.0);
}

TEST_CASE("conv2d_eval_fused: an input BatchNorm of the wrong width is refused", "[conv2d]") {
  const Variable x(test::seeded_tensor({1, 4, 5, 5}, 1));
  const Variable w(test::seeded_tensor({6, 4, 1, 1}, 2));
  const ops::EvalBatchNorm in_bn = random_bn(6, 3);  // the output's width, not the input's
  NoGradGuard no_grad;
  REQUIRE_THROWS_WITH(ops::conv2d_eval_fused(x, w, Variable(), ops::Conv2dOptions::make(1, 0, 1),
                                             nullptr, false, Variable(), &in_bn),
                      Catch::Contains("input BatchNorm running_mean must be f32 of 4 values (one "
                                      "per input channel)"));
}

TEST_CASE(
    "conv2d_eval_fused: a reduced model in eval mode, as trained and folded, gives the "
    "unfused outputs",
    "[model][deploy]") {
  NextViT model(test::reduced_config("fused", 3, 10), 5);
  Generator g(5);
  // Non-trivial BatchNorm statistics: one training batch.
  (void)model.forward(Variable(test::random_tensor({2, 3, 32, 32}, g)));
  model.eval();
  const Tensor x = test::random_tensor({2, 3, 32, 32}, g);
  for (bool folded : {false, true}) {
    if (folded) fold_batch_norms(model);
    INFO("folded=" << folded);
    // With grad enabled the parameters require gradients: every layer runs unfused.
    const Tensor unfused = model.forward(Variable(x)).data();
    NoGradGuard no_grad;
    const Tensor fused = model.forward(Variable(x)).data();
    NV_REQUIRE_CLOSE(fused, unfused, 1e-5, 1e-5 * test::max_abs(unfused));
  }
}
