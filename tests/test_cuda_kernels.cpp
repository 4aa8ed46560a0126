// The CUDA kernels against the CPU kernels, kernel by kernel (the op-level suite is
// test_cuda_backend.cpp): the same random inputs through kernels::cuda:: and kernels::cpu::,
// outputs compared within a stated tolerance. Outputs are poisoned with NaN before each CUDA
// call, so an element a kernel forgets to write fails the comparison. Shapes include
// Next-ViT-S's real ones (batch 2) and odd sizes that divide no tile, block or warp.
//
// Every test is named "cuda: ..." and skips itself without a device (tests/main.cpp). The
// host-side emulation of the hand-written kernels, which runs without a GPU, is in
// test_cuda_emulation.cpp.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/optim.h"
#include "kernels/pooled_attention.h"
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
  NV_REQUIRE_CLOSE(y.cpu(), r.y, tol, tol);
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
        Case{{5, 64, 3, 70}, 32}}) {
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
                 if (on_cpu) {
                   kernels::cpu::sgd_step(n, h, mp(st[0]), cp(g), mp(st[1]));
                 } else {
                   kernels::cuda::sgd_step(n, h, mp(st[0]), cp(g_gpu), mp(st[1]));
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
               if (on_cpu) {
                 kernels::cpu::adamw_step(n, a, mp(st[0]), cp(g), mp(st[1]), mp(st[2]));
               } else {
                 kernels::cuda::adamw_step(n, a, mp(st[0]), cp(g_gpu), mp(st[1]), mp(st[2]));
               }
             },
             {p0, m0, v0});
  }
  run_both("ema",
           [&](bool on_cpu, std::vector<Tensor>& st) {
             if (on_cpu) {
               kernels::cpu::ema_update(n, 0.999f, 0.001f, cp(g), mp(st[0]));
             } else {
               kernels::cuda::ema_update(n, 0.999f, 0.001f, cp(g_gpu), mp(st[0]));
             }
           },
           {p0});
  // sum_squares accumulates into out[0].
  Tensor out_cpu = Tensor::full({1}, 2.5f), out_gpu = Tensor::full({1}, 2.5f, Device::cuda());
  kernels::cpu::sum_squares(n, cp(g), mp(out_cpu));
  kernels::cuda::sum_squares(n, cp(g_gpu), mp(out_gpu));
  kernels::cuda::sum_squares(7, cp(g_gpu), mp(out_gpu));
  kernels::cpu::sum_squares(7, cp(g), mp(out_cpu));
  REQUIRE(out_gpu.item() == Approx(out_cpu.item()).epsilon(1e-6));
#endif
}

TEST_CASE("cuda: fused pooled attention matches the CPU", "[cuda][attention]") {
  if (no_gpu()) return;
#ifdef NEXTVIT_WITH_CUDA
  struct Case {
    int64_t heads, n, m, d;
  };
  // E-MHSA of Next-ViT-S at 224 with batch 2 (stage 2: 8 heads, 784 queries, 49 keys; stage 3:
  // 16 heads, 196 queries; stage 4: 32 heads, 49 queries), then d = 16 and odd sizes, and the
  // largest key count.
  for (const Case& c :
       {Case{16, 784, 49, 32}, Case{32, 196, 49, 32}, Case{64, 49, 49, 32}, Case{3, 37, 17, 16},
        Case{5, 65, 33, 16}, Case{1, 1, 1, 32}, Case{2, 300, 256, 32}, Case{2, 70, 200, 16}}) {
    INFO("heads " << c.heads << " n " << c.n << " m " << c.m << " d " << c.d);
    const float scale = 1.0f / std::sqrt(float(c.d));
    // Outliers in q make some rows' softmax nearly one-hot: the max subtraction must hold.
    Tensor q = rnd({c.heads, c.n, c.d}, 1, -4.0f, 4.0f), k = rnd({c.heads, c.m, c.d}, 2),
           v = rnd({c.heads, c.m, c.d}, 3), g = rnd({c.heads, c.n, c.d}, 4);
    Tensor out = Tensor::empty({c.heads, c.n, c.d}), p = Tensor::empty({c.heads, c.n, c.m});
    kernels::cpu::pooled_attention_forward(c.heads, c.n, c.m, c.d, scale, cp(q), cp(k), cp(v),
                                           mp(out), mp(p));
    Tensor dq = Tensor::empty(q.shape()), dk = Tensor::empty(k.shape()),
           dv = Tensor::empty(v.shape());
    kernels::cpu::pooled_attention_backward(c.heads, c.n, c.m, c.d, scale, cp(q), cp(k), cp(v),
                                            cp(p), cp(g), mp(dq), mp(dk), mp(dv));

    Tensor qg = gpu(q), kg = gpu(k), vg = gpu(v), gg = gpu(g);
    Tensor out_g = poisoned_gpu(out.shape()), p_g = poisoned_gpu(p.shape());
    kernels::cuda::pooled_attention_forward(c.heads, c.n, c.m, c.d, scale, cp(qg), cp(kg), cp(vg),
                                            mp(out_g), mp(p_g));
    NV_REQUIRE_CLOSE(p_g.cpu(), p, 1e-5, 1e-6);
    NV_REQUIRE_CLOSE(out_g.cpu(), out, 1e-5, 1e-5);
    Tensor dq_g = poisoned_gpu(q.shape()), dk_g = poisoned_gpu(k.shape()),
           dv_g = poisoned_gpu(v.shape());
    kernels::cuda::pooled_attention_backward(c.heads, c.n, c.m, c.d, scale, cp(qg), cp(kg), cp(vg),
                                             cp(gpu(p)), cp(gg), mp(dq_g), mp(dk_g), mp(dv_g));
    NV_REQUIRE_CLOSE(dq_g.cpu(), dq, 1e-4, 1e-5);
    NV_REQUIRE_CLOSE(dk_g.cpu(), dk, 1e-4, 1e-4);
    NV_REQUIRE_CLOSE(dv_g.cpu(), dv, 1e-4, 1e-4);
  }
  // Out of the kernel's range: a clear error, not a wrong result.
  Tensor q = poisoned_gpu({1, 4, 64}), kv = poisoned_gpu({1, 4, 64});
  Tensor o = poisoned_gpu({1, 4, 64}), pr = poisoned_gpu({1, 4, 4});
  REQUIRE_THROWS_WITH(kernels::cuda::pooled_attention_forward(1, 4, 4, 64, 1.0f, cp(q), cp(kv),
                                                              cp(kv), mp(o), mp(pr)),
                      Catch::Contains("head dimension 16 or 32"));
#endif
}
