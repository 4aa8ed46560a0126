// The CUDA kernels against the CPU kernels, kernel by kernel (the op-level checks, values and
// gradients, are the "cuda: ..." cases in each op's own test file): the same random inputs through
// kernels::cuda:: and kernels::cpu::, outputs compared within a stated tolerance. Outputs are
// poisoned with NaN before each CUDA call, so an element a kernel forgets to write fails the
// comparison. Shapes include Next-ViT-S's real ones (batch 2) and odd sizes that divide no tile,
// block or warp.
//
// Every test is named "cuda: ..." and skips itself without a device (tests/main.cpp). The
// host-side emulation of the hand-written kernels, which runs without a GPU, is in
// test_cuda_emulation.cpp; the fused pooled attention's CUDA test is in
// test_pooled_attention.cpp, beside its CPU tests.
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/batch_norm.h"
#include "kernels/conv2d.h"
#include "kernels/cross_entropy.h"
#include "kernels/drop_path.h"
#include "kernels/optim.h"
#include "kernels/pooling.h"
#include "kernels/shape.h"
#include "kernels/softmax.h"
#include "test_util.h"

#ifdef NEXTVIT_WITH_CUDA
#include "kernels/cuda/conv2d_paths.h"
#endif

using namespace nextvit;

namespace {

bool no_gpu() {
  if (cuda_available()) return false;
  WARN("skipped: no CUDA device");
  return true;
}

#ifdef NEXTVIT_WITH_CUDA

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Tensor rnd(const Shape& s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Generator g(seed);
  return test::random_tensor(s, g, lo, hi);
}

Tensor gpu(const Tensor& t) {
  return t.to(Device::cuda());
}
Tensor poisoned_gpu(const Shape& s) {
  return Tensor::full(s, kNaN, Device::cuda());
}
const float* cp(const Tensor& t) {
  return t.data<float>();
}
float* mp(const Tensor& t) {
  return t.data<float>();
}

kernels::Conv2dShape conv_shape(const Shape& x, const Shape& w, int64_t stride, int64_t pad,
                                int64_t groups) {
  kernels::Conv2dShape s;
  s.batch = x[0];
  s.in_channels = x[1];
  s.in_h = x[2];
  s.in_w = x[3];
  s.out_channels = w[0];
  s.kernel_h = w[2];
  s.kernel_w = w[3];
  s.stride_h = s.stride_w = stride;
  s.pad_h = s.pad_w = pad;
  s.groups = groups;
  return s;
}

// The three passes of the CPU convolution on one set of inputs.
struct ConvRef {
  Tensor x, w, b, dy;    // inputs (CPU)
  Tensor y, dx, dw, db;  // CPU results
  Tensor y_no_bias;      // the forward without the bias: what the paths (no bias) compute
};

ConvRef conv_reference(const kernels::Conv2dShape& s, bool bias, uint64_t seed) {
  ConvRef r;
  r.x = rnd({s.batch, s.in_channels, s.in_h, s.in_w}, seed);
  r.w = rnd({s.out_channels, s.in_channels / s.groups, s.kernel_h, s.kernel_w}, seed + 1, -0.3f,
            0.3f);
  r.b = bias ? rnd({s.out_channels}, seed + 2) : Tensor();
  r.dy = rnd({s.batch, s.out_channels, s.out_h(), s.out_w()}, seed + 3);
  r.y = Tensor::empty(r.dy.shape());
  r.dx = Tensor::empty(r.x.shape());
  r.dw = Tensor::empty(r.w.shape());
  r.db = bias ? Tensor::empty({s.out_channels}) : Tensor();
  kernels::cpu::conv2d_forward(s, cp(r.x), cp(r.w), bias ? cp(r.b) : nullptr, mp(r.y), nullptr);
  r.y_no_bias = bias ? Tensor::empty(r.dy.shape()) : r.y;
  if (bias) kernels::cpu::conv2d_forward(s, cp(r.x), cp(r.w), nullptr, mp(r.y_no_bias), nullptr);
  kernels::cpu::conv2d_backward_data(s, cp(r.dy), cp(r.w), mp(r.dx), nullptr);
  kernels::cpu::conv2d_backward_weight(s, cp(r.x), cp(r.dy), mp(r.dw), bias ? mp(r.db) : nullptr,
                                       nullptr);
  return r;
}

using ConvFn = void (*)(const kernels::Conv2dShape&, const float*, const float*, float*);

// One implementation's three passes (no bias) against the reference.
void check_conv_path(const char* name, const kernels::Conv2dShape& s, const ConvRef& r, ConvFn fwd,
                     ConvFn bwd_data, ConvFn bwd_weight, double tol) {
  INFO(name);
  Tensor x = gpu(r.x), w = gpu(r.w), dy = gpu(r.dy);
  Tensor y = poisoned_gpu(r.y.shape()), dx = poisoned_gpu(r.x.shape());
  Tensor dw = poisoned_gpu(r.w.shape());
  fwd(s, cp(x), cp(w), mp(y));
  bwd_data(s, cp(dy), cp(w), mp(dx));
  bwd_weight(s, cp(x), cp(dy), mp(dw));
  NV_REQUIRE_CLOSE(y.cpu(), r.y_no_bias, tol, tol);
  NV_REQUIRE_CLOSE(dx.cpu(), r.dx, tol, tol);
  // dw sums over batch x pixels products: a larger absolute error.
  NV_REQUIRE_CLOSE(dw.cpu(), r.dw, tol, tol * 10);
}

// The dispatcher kernels::cuda::conv2d_* (with bias) against the reference.
void check_conv_dispatch(const kernels::Conv2dShape& s, const ConvRef& r, double tol) {
  INFO("dispatcher");
  const bool bias = r.b.defined();
  Tensor x = gpu(r.x), w = gpu(r.w), dy = gpu(r.dy), b = bias ? gpu(r.b) : Tensor();
  Tensor y = poisoned_gpu(r.y.shape()), dx = poisoned_gpu(r.x.shape());
  Tensor dw = poisoned_gpu(r.w.shape()), db = bias ? poisoned_gpu({s.out_channels}) : Tensor();
  int64_t ws = -1;
  kernels::cuda::conv2d_workspace_floats(s, &ws);
  REQUIRE(ws == 0);
  kernels::cuda::conv2d_forward(s, cp(x), cp(w), bias ? cp(b) : nullptr, mp(y), nullptr);
  kernels::cuda::conv2d_backward_data(s, cp(dy), cp(w), mp(dx), nullptr);
  kernels::cuda::conv2d_backward_weight(s, cp(x), cp(dy), mp(dw), bias ? mp(db) : nullptr, nullptr);
  NV_REQUIRE_CLOSE(y.cpu(), r.y, tol, tol);
  NV_REQUIRE_CLOSE(dx.cpu(), r.dx, tol, tol);
  NV_REQUIRE_CLOSE(dw.cpu(), r.dw, tol, tol * 10);
  if (bias) NV_REQUIRE_CLOSE(db.cpu(), r.db, tol, tol * 10);
  // The bias gradient alone (dw null: x is not needed).
  if (bias) {
    Tensor db2 = poisoned_gpu({s.out_channels});
    kernels::cuda::conv2d_backward_weight(s, nullptr, cp(dy), nullptr, mp(db2), nullptr);
    NV_REQUIRE_CLOSE(db2.cpu(), r.db, tol, tol * 10);
  }
}

#endif  // NEXTVIT_WITH_CUDA

}  // namespace

TEST_CASE("cuda: grouped 3x3 convolution at Next-ViT-S shapes matches the CPU and cuDNN",
          "[cuda][conv]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  using namespace kernels::cuda::conv_paths;
  struct Case {
    Shape x;
    int64_t c;  // channels per group
  };
  for (const Case& k :
       {Case{{2, 96, 56, 56}, 32}, Case{{2, 192, 28, 28}, 32}, Case{{2, 384, 14, 14}, 32},
        Case{{2, 768, 7, 7}, 32}, Case{{2, 64, 28, 28}, 32},  // NTB's MHCA at stage 2
        Case{{3, 48, 9, 11}, 16},                             // odd sizes, 16 per group
        Case{{1, 32, 1, 1}, 32},                              // one pixel
        Case{{2, 32, 33, 17}, 16},                            // two tiles across
        Case{{5, 64, 3, 70}, 32},                             // wide and flat
        // backward-weight with more work items than blocks per group (batch 48 at 7x7: 48
        // items, 44 blocks per group), as at batch 128 in stage 4
        Case{{48, 384, 7, 7}, 32}}) {
    const int64_t channels = k.x[1];
    const kernels::Conv2dShape s = conv_shape(k.x, {channels, k.c, 3, 3}, 1, 1, channels / k.c);
    INFO("x " << shape_str(k.x) << ", " << k.c << " channels per group");
    REQUIRE(grouped3x3_supported(s));
    const ConvRef r = conv_reference(s, false, uint64_t(channels + k.x[2]));
    check_conv_path("grouped3x3", s, r, grouped3x3_forward, grouped3x3_backward_data,
                    grouped3x3_backward_weight, 1e-4);
    if (cudnn_built()) {
      check_conv_path("cudnn", s, r, cudnn_forward, cudnn_backward_data, cudnn_backward_weight,
                      1e-4);
    }
    check_conv_dispatch(s, r, 1e-4);
  }
#endif
}

TEST_CASE("cuda: grouped 3x3 kernels are deterministic", "[cuda][conv]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  using namespace kernels::cuda::conv_paths;
  const kernels::Conv2dShape s = conv_shape({4, 64, 28, 28}, {64, 32, 3, 3}, 1, 1, 2);
  Tensor x = gpu(rnd({4, 64, 28, 28}, 1)), dy = gpu(rnd({4, 64, 28, 28}, 2));
  Tensor a = poisoned_gpu({64, 32, 3, 3}), b = poisoned_gpu({64, 32, 3, 3});
  grouped3x3_backward_weight(s, cp(x), cp(dy), mp(a));
  grouped3x3_backward_weight(s, cp(x), cp(dy), mp(b));
  REQUIRE(a.cpu().to_vector() == b.cpu().to_vector());
#endif
}

TEST_CASE("cuda: 1x1 convolutions through cuBLAS match the CPU", "[cuda][conv]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  using namespace kernels::cuda::conv_paths;
  struct Case {
    Shape x, w;
    int64_t groups;
    bool bias;
  };
  // Weight gradient by per-image partials (wide images) and by gathering (narrow images).
  for (const Case& k : {Case{{2, 96, 28, 28}, {288, 96, 1, 1}, 1, true},   // partials
                        Case{{4, 384, 7, 7}, {1152, 384, 1, 1}, 1, true},  // gather
                        Case{{3, 40, 7, 5}, {72, 20, 1, 1}, 2, true},      // groups
                        Case{{1, 7, 3, 3}, {5, 7, 1, 1}, 1, false}}) {
    INFO("x " << shape_str(k.x) << " w " << shape_str(k.w));
    const kernels::Conv2dShape s = conv_shape(k.x, k.w, 1, 0, k.groups);
    const ConvRef r = conv_reference(s, k.bias, uint64_t(k.x[1] * 3 + k.w[0]));
    check_conv_path("pointwise", s, r, pointwise_forward, pointwise_backward_data,
                    pointwise_backward_weight, 1e-4);
    check_conv_dispatch(s, r, 1e-4);
  }
#endif
}

TEST_CASE("cuda: general convolutions (cuDNN and the direct kernel) match the CPU",
          "[cuda][conv]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  using namespace kernels::cuda::conv_paths;
  struct Case {
    Shape x, w;
    int64_t stride, pad, groups;
    bool bias;
  };
  for (const Case& k : {Case{{2, 3, 37, 41}, {64, 3, 3, 3}, 2, 1, 1, false},    // stem 1
                        Case{{2, 64, 18, 18}, {32, 64, 3, 3}, 1, 1, 1, false},  // stem 2
                        Case{{2, 32, 18, 18}, {64, 32, 3, 3}, 1, 1, 1, true},   // stem 3
                        Case{{1, 6, 12, 13}, {4, 3, 5, 5}, 1, 2, 2, true},
                        Case{{2, 8, 9, 9}, {8, 8, 1, 1}, 2, 0, 1, false}}) {  // strided 1x1
    INFO("x " << shape_str(k.x) << " w " << shape_str(k.w) << " stride " << k.stride << " pad "
              << k.pad << " groups " << k.groups);
    const kernels::Conv2dShape s = conv_shape(k.x, k.w, k.stride, k.pad, k.groups);
    REQUIRE_FALSE(grouped3x3_supported(s));
    const ConvRef r = conv_reference(s, k.bias, uint64_t(k.x[1] + k.w[0] * 5));
    check_conv_path("direct", s, r, direct_forward, direct_backward_data, direct_backward_weight,
                    1e-4);
    if (cudnn_built()) {
      check_conv_path("cudnn", s, r, cudnn_forward, cudnn_backward_data, cudnn_backward_weight,
                      1e-4);
    }
    check_conv_dispatch(s, r, 1e-4);
  }
#endif
}

TEST_CASE("cuda: optimizer kernels match the CPU", "[cuda][optim]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  const int64_t n = 100003;
  const Tensor p0 = rnd({n}, 1), g = rnd({n}, 2), m0 = rnd({n}, 3, -0.1f, 0.1f),
               v0 = rnd({n}, 4, 0.0f, 0.01f);
  auto run_both = [&](const char* what, const auto& step, std::vector<Tensor> state) {
    INFO(what);
    std::vector<Tensor> cpu_state, gpu_state;
    for (const Tensor& t : state) {
      cpu_state.push_back(t.clone());
      gpu_state.push_back(gpu(t));
    }
    step(true, cpu_state);
    step(false, gpu_state);
    for (size_t i = 0; i < state.size(); ++i) {
      NV_REQUIRE_CLOSE(gpu_state[i].cpu(), cpu_state[i], 1e-5, 1e-6);
    }
  };
  const Tensor g_gpu = gpu(g);
  for (bool nesterov : {false, true}) {
    for (bool init : {false, true}) {
      kernels::SgdHyper h;
      h.lr = 0.1f;
      h.momentum = 0.9f;
      h.one_minus_dampening = 0.95f;
      h.weight_decay = 0.01f;
      h.nesterov = nesterov;
      h.init_buffer = init;
      run_both("sgd",
               [&](bool on_cpu, std::vector<Tensor>& st) {
                 float* param[] = {mp(st[0])};
                 float* buf[] = {mp(st[1])};
                 const float* grad[] = {on_cpu ? cp(g) : cp(g_gpu)};
                 if (on_cpu) {
                   kernels::cpu::sgd_step(1, &n, &h, param, grad, buf);
                 } else {
                   kernels::cuda::sgd_step(1, &n, &h, param, grad, buf);
                 }
               },
               {p0, m0});
    }
  }
  kernels::AdamWHyper a;
  a.decay_factor = 1.0f - 0.01f * 0.05f;
  a.step_size = 0.01f / (1.0f - 0.9f * 0.9f * 0.9f);
  a.bias_correction2_sqrt = std::sqrt(1.0f - 0.999f * 0.999f * 0.999f);
  for (float w : {0.1f, 0.7f}) {  // both branches of torch's lerp
    a.one_minus_beta1 = w;
    run_both("adamw",
             [&](bool on_cpu, std::vector<Tensor>& st) {
               float* param[] = {mp(st[0])};
               float* m[] = {mp(st[1])};
               float* v[] = {mp(st[2])};
               const float* grad[] = {on_cpu ? cp(g) : cp(g_gpu)};
               if (on_cpu) {
                 kernels::cpu::adamw_step(1, &n, &a, param, grad, m, v);
               } else {
                 kernels::cuda::adamw_step(1, &n, &a, param, grad, m, v);
               }
             },
             {p0, m0, v0});
  }
  run_both("ema",
           [&](bool on_cpu, std::vector<Tensor>& st) {
             float* ema[] = {mp(st[0])};
             const float* value[] = {on_cpu ? cp(g) : cp(g_gpu)};
             if (on_cpu) {
               kernels::cpu::ema_update(1, &n, 0.999f, 0.001f, value, ema);
             } else {
               kernels::cuda::ema_update(1, &n, 0.999f, 0.001f, value, ema);
             }
           },
           {p0});
  // The norm of two tensors (g, and its first 7 elements), outputs poisoned first.
  Tensor out_cpu = Tensor::full({1}, NAN), out_gpu = Tensor::full({1}, NAN, Device::cuda());
  const int64_t sizes[] = {n, 7};
  float* x_cpu[] = {mp(g), mp(g)};
  float* x_gpu[] = {mp(g_gpu), mp(g_gpu)};
  kernels::cpu::global_norm(2, sizes, x_cpu, 0.0f, mp(out_cpu), nullptr);
  kernels::cuda::global_norm(2, sizes, x_gpu, 0.0f, mp(out_gpu), nullptr);
  REQUIRE(out_gpu.item() == Approx(out_cpu.item()).epsilon(1e-6));
#endif
}

TEST_CASE("cuda: batch norm kernels match the CPU (training, eval, fused ReLU)",
          "[cuda][batch_norm]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  struct Case {
    int64_t n, c, s;
  };
  // Multi-block path (M > 4096) with 16-byte vectors and without, the one-block path at
  // Next-ViT's late stages and E-MHSA's BatchNorm1d (S = 49), and BatchNorm1d on (N, C).
  // The multi-block path at 7x7 and 14x14 (M = N * S above 4096 at a large batch), 7x7 also
  // without vectors (S % 4 != 0).
  for (const Case& k : {Case{2, 96, 56 * 56}, Case{2, 64, 64 * 65}, Case{16, 8, 1024},
                        Case{2, 768, 49}, Case{8, 512, 49}, Case{4, 16, 33 * 17}, Case{3, 5, 1},
                        Case{96, 24, 7 * 7}, Case{24, 40, 14 * 14}}) {
    INFO("x (" << k.n << ", " << k.c << ", " << k.s << ")");
    kernels::BatchNormShape s;
    s.batch = k.n;
    s.channels = k.c;
    s.spatial = k.s;
    // An offset mean (values in [4, 7)) checks the shifted sums.
    const Tensor x = rnd({k.n, k.c, k.s}, 1, 4.0f, 7.0f), w = rnd({k.c}, 2), b = rnd({k.c}, 3);
    const Tensor rm = rnd({k.c}, 4), rv = rnd({k.c}, 5, 0.5f, 2.0f), dy = rnd({k.n, k.c, k.s}, 6);
    const Tensor xg = gpu(x), wg = gpu(w), bg = gpu(b), dyg = gpu(dy);
    for (bool relu : {false, true}) {
      INFO("relu " << relu);
      // Training forward, running statistics updated.
      Tensor y = Tensor::empty(x.shape()), sm = Tensor::empty({k.c}), si = Tensor::empty({k.c});
      Tensor rm_c = rm.clone(), rv_c = rv.clone();
      kernels::cpu::batch_norm_forward_train(s, cp(x), cp(w), cp(b), 0.1f, 1e-5f, mp(rm_c),
                                             mp(rv_c), relu, mp(y), mp(sm), mp(si));
      Tensor yg = poisoned_gpu(x.shape()), smg = poisoned_gpu({k.c}), sig = poisoned_gpu({k.c});
      Tensor rm_g = gpu(rm), rv_g = gpu(rv);
      kernels::cuda::batch_norm_forward_train(s, cp(xg), cp(wg), cp(bg), 0.1f, 1e-5f, mp(rm_g),
                                              mp(rv_g), relu, mp(yg), mp(smg), mp(sig));
      NV_REQUIRE_CLOSE(yg.cpu(), y, 1e-4, 1e-5);
      NV_REQUIRE_CLOSE(smg.cpu(), sm, 1e-6, 1e-6);
      NV_REQUIRE_CLOSE(sig.cpu(), si, 1e-5, 1e-6);
      NV_REQUIRE_CLOSE(rm_g.cpu(), rm_c, 1e-6, 1e-6);
      NV_REQUIRE_CLOSE(rv_g.cpu(), rv_c, 1e-5, 1e-6);
      // Backward in training mode, the output as the ReLU mask; then without dx, and without
      // dweight / dbias.
      Tensor dx = Tensor::empty(x.shape()), dw = Tensor::empty({k.c}), db = Tensor::empty({k.c});
      kernels::cpu::batch_norm_backward(s, cp(x), cp(dy), relu ? cp(y) : nullptr, cp(w), cp(sm),
                                        cp(si), true, mp(dx), mp(dw), mp(db));
      Tensor dxg = poisoned_gpu(x.shape()), dwg = poisoned_gpu({k.c}), dbg = poisoned_gpu({k.c});
      kernels::cuda::batch_norm_backward(s, cp(xg), cp(dyg), relu ? cp(yg) : nullptr, cp(wg),
                                         cp(smg), cp(sig), true, mp(dxg), mp(dwg), mp(dbg));
      NV_REQUIRE_CLOSE(dxg.cpu(), dx, 1e-3, 1e-4);
      NV_REQUIRE_CLOSE(dwg.cpu(), dw, 1e-4, 1e-4);
      NV_REQUIRE_CLOSE(dbg.cpu(), db, 1e-4, 1e-4);
      Tensor dw2 = poisoned_gpu({k.c}), db2 = poisoned_gpu({k.c});
      kernels::cuda::batch_norm_backward(s, cp(xg), cp(dyg), relu ? cp(yg) : nullptr, cp(wg),
                                         cp(smg), cp(sig), true, nullptr, mp(dw2), mp(db2));
      NV_REQUIRE_CLOSE(dw2.cpu(), dw, 1e-4, 1e-4);
      NV_REQUIRE_CLOSE(db2.cpu(), db, 1e-4, 1e-4);
      Tensor dx2 = poisoned_gpu(x.shape());
      kernels::cuda::batch_norm_backward(s, cp(xg), cp(dyg), relu ? cp(yg) : nullptr, cp(wg),
                                         cp(smg), cp(sig), true, mp(dx2), nullptr, nullptr);
      NV_REQUIRE_CLOSE(dx2.cpu(), dx, 1e-3, 1e-4);

      // Eval forward and backward (no affine parameters: gamma 1, beta 0).
      Tensor ye = Tensor::empty(x.shape()), sme = Tensor::empty({k.c}), sie = Tensor::empty({k.c});
      kernels::cpu::batch_norm_forward_eval(s, cp(x), nullptr, nullptr, cp(rm), cp(rv), 1e-5f, relu,
                                            mp(ye), mp(sme), mp(sie));
      Tensor yeg = poisoned_gpu(x.shape()), smeg = poisoned_gpu({k.c}), sieg = poisoned_gpu({k.c});
      const Tensor rmg0 = gpu(rm), rvg0 = gpu(rv);
      kernels::cuda::batch_norm_forward_eval(s, cp(xg), nullptr, nullptr, cp(rmg0), cp(rvg0), 1e-5f,
                                             relu, mp(yeg), mp(smeg), mp(sieg));
      NV_REQUIRE_CLOSE(yeg.cpu(), ye, 1e-5, 1e-5);
      NV_REQUIRE_CLOSE(sieg.cpu(), sie, 1e-6, 1e-6);
      Tensor dxe = Tensor::empty(x.shape());
      kernels::cpu::batch_norm_backward(s, cp(x), cp(dy), relu ? cp(ye) : nullptr, nullptr, cp(sme),
                                        cp(sie), false, mp(dxe), nullptr, nullptr);
      Tensor dxeg = poisoned_gpu(x.shape());
      kernels::cuda::batch_norm_backward(s, cp(xg), cp(dyg), relu ? cp(yeg) : nullptr, nullptr,
                                         cp(smeg), cp(sieg), false, mp(dxeg), nullptr, nullptr);
      NV_REQUIRE_CLOSE(dxeg.cpu(), dxe, 1e-5, 1e-6);
    }
  }
#endif
}

TEST_CASE("cuda: softmax kernels match the CPU", "[cuda][softmax]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  // 49 columns (E-MHSA), every register width's edge, and rows longer than 1024 (online form).
  for (int64_t cols : {49, 1, 7, 32, 33, 64, 100, 1000, 1024, 1025, 4099}) {
    const int64_t rows = cols > 1000 ? 37 : 301;
    INFO("(" << rows << ", " << cols << ")");
    // Values up to +-50: exp overflows without the maximum subtracted.
    const Tensor x = rnd({rows, cols}, uint64_t(cols), -50.0f, 50.0f), dy = rnd({rows, cols}, 9);
    Tensor y = Tensor::empty(x.shape()), dx = Tensor::empty(x.shape());
    kernels::cpu::softmax_forward(rows, cols, cp(x), mp(y));
    kernels::cpu::softmax_backward(rows, cols, cp(y), cp(dy), mp(dx));
    Tensor yg = poisoned_gpu(x.shape()), dxg = poisoned_gpu(x.shape());
    const Tensor xg = gpu(x), dyg = gpu(dy);
    kernels::cuda::softmax_forward(rows, cols, cp(xg), mp(yg));
    NV_REQUIRE_CLOSE(yg.cpu(), y, 1e-5, 1e-7);
    kernels::cuda::softmax_backward(rows, cols, cp(yg), cp(dyg), mp(dxg));
    NV_REQUIRE_CLOSE(dxg.cpu(), dx, 1e-4, 1e-6);
    // In place: y over x, dx over dy.
    Tensor inplace = gpu(x), ginplace = gpu(dy);
    kernels::cuda::softmax_forward(rows, cols, cp(inplace), mp(inplace));
    NV_REQUIRE_CLOSE(inplace.cpu(), y, 1e-5, 1e-7);
    kernels::cuda::softmax_backward(rows, cols, cp(inplace), cp(ginplace), mp(ginplace));
    NV_REQUIRE_CLOSE(ginplace.cpu(), dx, 1e-4, 1e-6);
  }
  // A row of all -inf gives what the CPU gives (NaN, as PyTorch), at every row length.
  for (int64_t cols : {1, 49, 1000, 1025}) {
    INFO("all -inf, " << cols << " columns");
    const Tensor x = Tensor::full({3, cols}, -std::numeric_limits<float>::infinity());
    Tensor y = Tensor::empty(x.shape()), yg = poisoned_gpu(x.shape());
    kernels::cpu::softmax_forward(3, cols, cp(x), mp(y));
    kernels::cuda::softmax_forward(3, cols, cp(gpu(x)), mp(yg));
    const std::vector<float> a = y.to_vector(), b = yg.cpu().to_vector();
    for (size_t i = 0; i < a.size(); ++i) REQUIRE(std::isnan(a[i]) == std::isnan(b[i]));
  }
#endif
}

TEST_CASE("cuda: pooling kernels match the CPU, incl. ceil_mode", "[cuda][pooling]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  struct Case {
    int64_t planes, h, w, kh, kw, sh, sw, ph, pw;
    bool ceil, include_pad;
  };
  for (const Case& k : {
           Case{10, 7, 9, 2, 2, 2, 2, 0, 0, true, false},           // PatchEmbed, odd sizes, ceil
           Case{2 * 96, 56, 56, 2, 2, 2, 2, 0, 0, true, false},     // PatchEmbed at stage 2
           Case{6, 11, 13, 3, 3, 2, 2, 1, 1, true, true},           // padding counted, ceil
           Case{6, 11, 13, 3, 2, 2, 3, 1, 1, false, false},         // padding not counted
           Case{2 * 256, 1, 784, 1, 16, 1, 16, 0, 0, false, true},  // E-MHSA's AvgPool1d
       }) {
    kernels::AvgPool2dShape s;
    s.planes = k.planes;
    s.in_h = k.h;
    s.in_w = k.w;
    s.kernel_h = k.kh;
    s.kernel_w = k.kw;
    s.stride_h = k.sh;
    s.stride_w = k.sw;
    s.pad_h = k.ph;
    s.pad_w = k.pw;
    s.count_include_pad = k.include_pad;
    s.out_h = kernels::pooled_size(k.h, k.kh, k.sh, k.ph, k.ceil);
    s.out_w = kernels::pooled_size(k.w, k.kw, k.sw, k.pw, k.ceil);
    INFO(k.planes << " planes " << k.h << "x" << k.w << " -> " << s.out_h << "x" << s.out_w);
    const Tensor x = rnd({k.planes, k.h, k.w}, 11), dy = rnd({k.planes, s.out_h, s.out_w}, 12);
    Tensor y = Tensor::empty(dy.shape()), dx = Tensor::empty(x.shape());
    kernels::cpu::avg_pool2d_forward(s, cp(x), mp(y));
    kernels::cpu::avg_pool2d_backward(s, cp(dy), mp(dx));
    Tensor yg = poisoned_gpu(dy.shape()), dxg = poisoned_gpu(x.shape());
    kernels::cuda::avg_pool2d_forward(s, cp(gpu(x)), mp(yg));
    kernels::cuda::avg_pool2d_backward(s, cp(gpu(dy)), mp(dxg));
    NV_REQUIRE_CLOSE(yg.cpu(), y, 1e-5, 1e-6);
    NV_REQUIRE_CLOSE(dxg.cpu(), dx, 1e-5, 1e-6);
  }
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{2 * 1024, 49}, {3, 1}, {5, 3136}}) {
    INFO("global pool (" << rows << ", " << cols << ")");
    const Tensor x = rnd({rows, cols}, 13), dy = rnd({rows}, 14);
    Tensor y = Tensor::empty({rows}), dx = Tensor::empty({rows, cols});
    kernels::cpu::global_avg_pool_forward(rows, cols, cp(x), mp(y));
    kernels::cpu::global_avg_pool_backward(rows, cols, cp(dy), mp(dx));
    Tensor yg = poisoned_gpu({rows}), dxg = poisoned_gpu({rows, cols});
    kernels::cuda::global_avg_pool_forward(rows, cols, cp(gpu(x)), mp(yg));
    kernels::cuda::global_avg_pool_backward(rows, cols, cp(gpu(dy)), mp(dxg));
    NV_REQUIRE_CLOSE(yg.cpu(), y, 1e-5, 1e-6);
    NV_REQUIRE_CLOSE(dxg.cpu(), dx, 1e-6, 1e-7);
  }
#endif
}

TEST_CASE("cuda: cross-entropy kernels match the CPU", "[cuda][cross_entropy]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  struct Case {
    int64_t n, k;
    float smoothing;
  };
  for (const Case& c : {Case{6, 11, 0.1f}, Case{128, 1000, 0.1f}, Case{3, 1000, 0.0f},
                        Case{1, 1, 0.0f}, Case{300, 7, 0.3f}}) {
    INFO("(" << c.n << ", " << c.k << ") smoothing " << c.smoothing);
    const Tensor logits = rnd({c.n, c.k}, uint64_t(c.n + c.k), -6.0f, 6.0f);
    std::vector<int64_t> t(static_cast<size_t>(c.n));
    Generator g(7);
    for (auto& v : t) v = g.randint(c.k);
    const Tensor targets = Tensor::from_vector_i64(t, {c.n});
    Tensor loss = Tensor::empty({1}), lse = Tensor::empty({c.n}),
           dl = Tensor::empty(logits.shape());
    const Tensor grad = Tensor::full({1}, 0.7f);
    kernels::cpu::cross_entropy_forward(c.n, c.k, cp(logits), targets.data<int64_t>(), c.smoothing,
                                        mp(loss), mp(lse));
    kernels::cpu::cross_entropy_backward(c.n, c.k, cp(logits), targets.data<int64_t>(), cp(lse),
                                         c.smoothing, cp(grad), mp(dl));
    const Tensor lg = gpu(logits), tg = targets.to(Device::cuda()), gg = gpu(grad);
    Tensor lossg = poisoned_gpu({1}), lseg = poisoned_gpu({c.n}),
           dlg = poisoned_gpu(logits.shape());
    kernels::cuda::cross_entropy_forward(c.n, c.k, cp(lg), tg.data<int64_t>(), c.smoothing,
                                         mp(lossg), mp(lseg));
    kernels::cuda::cross_entropy_backward(c.n, c.k, cp(lg), tg.data<int64_t>(), cp(lseg),
                                          c.smoothing, cp(gg), mp(dlg));
    NV_REQUIRE_CLOSE(lossg.cpu(), loss, 1e-6, 1e-6);
    NV_REQUIRE_CLOSE(lseg.cpu(), lse, 1e-6, 1e-6);
    NV_REQUIRE_CLOSE(dlg.cpu(), dl, 1e-4, 1e-7);
  }
#endif
}

TEST_CASE("cuda: copy_2d and scale_rows match the CPU", "[cuda][shape]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  // More rows than the grid's 65535 (the row-stride loop), and a concat-like strided copy.
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{70000, 3}, {4, 1000}, {1, 1}}) {
    INFO("(" << rows << ", " << cols << ")");
    const Tensor src = rnd({rows, cols + 5}, 15);
    Tensor dst = Tensor::full({rows, cols + 2}, -7.0f);
    Tensor dstg = gpu(dst);
    kernels::cpu::copy_2d(rows, cols, cp(src), cols + 5, mp(dst) + 1, cols + 2);
    kernels::cuda::copy_2d(rows, cols, cp(gpu(src)), cols + 5, mp(dstg) + 1, cols + 2);
    REQUIRE(dstg.cpu().to_vector() == dst.to_vector());  // untouched columns kept as well

    const Tensor x = rnd({rows, cols}, 16), scale = rnd({rows}, 17);
    Tensor y = Tensor::empty(x.shape());
    kernels::cpu::scale_rows(rows, cols, cp(x), cp(scale), mp(y));
    Tensor yg = gpu(x);  // in place
    kernels::cuda::scale_rows(rows, cols, cp(yg), cp(gpu(scale)), mp(yg));
    REQUIRE(yg.cpu().to_vector() == y.to_vector());
  }
#endif
}
