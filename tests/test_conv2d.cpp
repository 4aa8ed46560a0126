// ops::conv2d on the CPU: forward and all three gradients against a direct convolution written
// here in double precision, for groups, strides, paddings, kernel sizes, non-square shapes and
// the chunking modes of the kernel (1x1 in place, small images grouped, large images cut into
// several chunks, tiny and one-pixel maps); central-difference gradient checks; and the shape
// errors.
#include <omp.h>

#include <vector>

#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "test_util.h"

using namespace nextvit;

namespace {

struct Config {
  int64_t n, cin, h, w, cout, kh, kw, sh, sw, ph, pw, groups;
  bool bias;
};

// y = conv(x, w) + b and, for an output gradient dy, dx / dw / db, by the definition:
// y[n, co, oh, ow] = b[co] + sum_{ci, i, j} x[n, g*Cin_g + ci, oh*sh - ph + i, ow*sw - pw + j]
//                                         * w[co, ci, i, j]       with g = co / Cout_g.
struct Reference {
  std::vector<double> y, dx, dw, db;
};

Reference reference(const Config& c, const std::vector<float>& x, const std::vector<float>& w,
                    const std::vector<float>& b, const std::vector<float>& dy) {
  const int64_t ho = (c.h + 2 * c.ph - c.kh) / c.sh + 1, wo = (c.w + 2 * c.pw - c.kw) / c.sw + 1;
  const int64_t cin_g = c.cin / c.groups, cout_g = c.cout / c.groups;
  Reference r;
  r.y.assign(size_t(c.n * c.cout * ho * wo), 0.0);
  r.dx.assign(x.size(), 0.0);
  r.dw.assign(w.size(), 0.0);
  r.db.assign(size_t(c.cout), 0.0);
  for (int64_t n = 0; n < c.n; ++n) {
    for (int64_t co = 0; co < c.cout; ++co) {
      const int64_t grp = co / cout_g;
      for (int64_t oh = 0; oh < ho; ++oh) {
        for (int64_t ow = 0; ow < wo; ++ow) {
          const int64_t yi = ((n * c.cout + co) * ho + oh) * wo + ow;
          double acc = c.bias ? b[co] : 0.0;
          const double g = dy[yi];
          r.db[co] += g;
          for (int64_t ci = 0; ci < cin_g; ++ci) {
            for (int64_t i = 0; i < c.kh; ++i) {
              for (int64_t j = 0; j < c.kw; ++j) {
                const int64_t ih = oh * c.sh - c.ph + i, iw = ow * c.sw - c.pw + j;
                if (ih < 0 || ih >= c.h || iw < 0 || iw >= c.w) continue;
                const int64_t xi = ((n * c.cin + grp * cin_g + ci) * c.h + ih) * c.w + iw;
                const int64_t wi = ((co * cin_g + ci) * c.kh + i) * c.kw + j;
                acc += double(x[xi]) * w[wi];
                r.dx[xi] += g * w[wi];
                r.dw[wi] += g * x[xi];
              }
            }
          }
          r.y[yi] = acc;
        }
      }
    }
  }
  return r;
}

Tensor to_tensor(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(std::vector<float>(v.begin(), v.end()), shape);
}

// Runs ops::conv2d forward and backward for one configuration and compares everything.
void check_config(const Config& c, Generator& g) {
  INFO(fmt::format(
      "N={} Cin={} {}x{} Cout={} kernel {}x{} stride ({}, {}) pad ({}, {}) groups {} "
      "bias {}",
      c.n, c.cin, c.h, c.w, c.cout, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.groups, c.bias));
  Tensor x = test::random_tensor({c.n, c.cin, c.h, c.w}, g);
  Tensor w = test::random_tensor({c.cout, c.cin / c.groups, c.kh, c.kw}, g);
  Tensor b = c.bias ? test::random_tensor({c.cout}, g) : Tensor();
  Variable vx(x, true), vw(w, true), vb = c.bias ? Variable(b, true) : Variable();
  ops::Conv2dOptions o{c.sh, c.sw, c.ph, c.pw, c.groups};
  Variable y = ops::conv2d(vx, vw, vb, o);
  Tensor dy = test::random_tensor(y.shape(), g);
  y.backward(dy);
  Reference r = reference(c, x.to_vector(), w.to_vector(),
                          c.bias ? b.to_vector() : std::vector<float>(), dy.to_vector());
  NV_REQUIRE_CLOSE(y.data(), to_tensor(r.y, y.shape()), 1e-4, 1e-4);
  NV_REQUIRE_CLOSE(vx.grad(), to_tensor(r.dx, x.shape()), 1e-4, 1e-4);
  NV_REQUIRE_CLOSE(vw.grad(), to_tensor(r.dw, w.shape()), 1e-4, 1e-4);
  if (c.bias) NV_REQUIRE_CLOSE(vb.grad(), to_tensor(r.db, {c.cout}), 1e-4, 1e-4);
}

// Every configuration below, chosen to reach each path of kernels/cpu/conv2d.cpp.
const std::vector<Config>& configs() {
  static const std::vector<Config> list = {
      // n cin  h   w cout kh kw sh sw ph pw groups bias
      {2, 3, 9, 7, 4, 3, 3, 1, 1, 1, 1, 1, true},       // dense 3x3, odd non-square image
      {2, 6, 8, 8, 6, 3, 3, 1, 1, 1, 1, 3, false},      // grouped
      {1, 64, 10, 10, 64, 3, 3, 1, 1, 1, 1, 2, false},  // MHCA: 32 channels per group
      {2, 4, 11, 9, 8, 5, 5, 2, 2, 2, 2, 2, true},      // 5x5, stride 2, pad 2
      {2, 3, 17, 17, 8, 3, 3, 2, 2, 1, 1, 1, false},    // stem: 3x3 stride 2
      {2, 4, 8, 6, 5, 3, 1, 2, 1, 1, 0, 1, true},       // 3x1 kernel, stride (2, 1), pad (1, 0)
      {1, 3, 7, 12, 2, 2, 4, 1, 3, 0, 2, 1, false},     // 2x4 kernel, stride (1, 3)
      {2, 5, 7, 9, 6, 3, 3, 1, 1, 0, 0, 1, true},       // no padding
      {2, 8, 9, 9, 4, 1, 1, 2, 2, 0, 0, 2, true},       // 1x1 stride 2: im2col, not pointwise
      {3, 5, 6, 7, 7, 1, 1, 1, 1, 0, 0, 1, true},       // 1x1, small images grouped together
      {2, 6, 20, 20, 9, 1, 1, 1, 1, 0, 0, 3, true},     // 1x1 grouped, images read in place
      {1, 40, 23, 21, 8, 3, 3, 1, 1, 1, 1, 1, true},    // several chunks in one image
      {5, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, false},      // small images grouped, 3x3
      {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, true},       // 1x1x1x1
      {1, 2, 3, 3, 2, 3, 3, 1, 1, 0, 0, 1, false},      // kernel covers the whole image
      {1, 64, 40, 40, 8, 3, 3, 2, 2, 1, 1, 1, true},    // stride 2, two chunks per image
      {2, 4, 7, 9, 6, 2, 4, 1, 1, 1, 2, 2, false},      // stride 1, even non-square kernel
      {1, 2, 5, 5, 2, 3, 3, 1, 1, 3, 3, 1, false},      // padding as large as the kernel
      {2, 2, 30, 30, 3, 3, 3, 1, 1, 1, 1, 1, true},     // 30 wide: implicit GEMM forward
      {1, 3, 5, 70, 4, 3, 3, 1, 1, 1, 1, 1, true},      // 70 wide: three pieces per row
      {2, 4, 6, 33, 6, 2, 4, 1, 1, 1, 2, 2, false},     // implicit, 2x4 kernel, groups
      {1, 3, 60, 50, 4, 3, 3, 2, 2, 1, 1, 1, true},     // 25 wide, stride 2: run-by-run im2col
      {3, 8, 14, 14, 8, 3, 3, 1, 1, 1, 1, 2, true},     // 14 wide: im2col from padded images
      {2, 4, 13, 12, 6, 2, 4, 1, 1, 1, 2, 1, false},    // padded, 13 wide, even kernel
      {1, 3, 5, 20, 4, 3, 3, 1, 1, 0, 0, 1, true},      // padded, no padding, 18 wide
      {1, 112, 12, 12, 4, 3, 3, 1, 1, 1, 1, 1, false},  // padded, column ranges of one image
      // Images of at most 16 pixels: im2col by permuting one vector per channel (AVX-512).
      {6, 32, 4, 4, 32, 3, 3, 1, 1, 1, 1, 2, true},   // MHCA-like at 4 x 4, images grouped
      {5, 12, 2, 2, 24, 3, 3, 1, 1, 1, 1, 3, false},  // 2 x 2
      {3, 8, 4, 3, 8, 3, 2, 1, 1, 1, 0, 1, true},     // 4 x 3, 3x2 kernel, pad (1, 0)
      {4, 8, 4, 4, 8, 3, 3, 2, 2, 1, 1, 1, true},     // stride 2: 2 x 2 out
      {2, 4, 4, 4, 4, 5, 5, 1, 1, 2, 2, 1, false},    // 25 kernel offsets
      // One pixel in and out (kernels/cpu/conv_one_pixel.cpp): a matrix product over the batch.
      {5, 32, 1, 1, 48, 3, 3, 1, 1, 1, 1, 16, true},  // MHCA-like: grouped 3x3, center tap
      {6, 24, 1, 1, 40, 1, 1, 1, 1, 0, 0, 1, true},   // 1x1: an MLP at the last stage
      {3, 8, 1, 1, 8, 5, 3, 1, 1, 2, 1, 2, false},    // 5x3 kernel: tap (2, 1)
      {4, 8, 1, 1, 16, 3, 3, 2, 2, 1, 1, 1, true},    // stride 2, still one pixel out
      {2, 4, 1, 1, 4, 3, 3, 1, 1, 2, 2, 1, true},     // one pixel in, 3x3 out: general path
  };
  return list;
}

}  // namespace

TEST_CASE("conv2d: forward and gradients match a direct convolution", "[conv2d]") {
  Generator g(21);
  for (const Config& c : configs()) check_config(c, g);
}

TEST_CASE("conv2d: the same with the AVX2 and portable GEMMs (im2col for every stride-1 shape)",
          "[conv2d]") {
  // The implicit-GEMM forward needs AVX-512; under the other micro-kernels wide stride-1 images
  // take the run-by-run im2col instead.
  using kernels::cpu::GemmIsa;
  for (GemmIsa isa : {GemmIsa::kAvx2, GemmIsa::kPortable}) {
    if (!kernels::cpu::gemm_isa_runs_here(isa)) continue;
    INFO("GEMM micro-kernel " << kernels::cpu::gemm_isa_name(isa));
    struct Isa {  // restores the previous choice even when a check fails
      GemmIsa previous;
      ~Isa() { kernels::cpu::set_gemm_isa(previous); }
    } restore{kernels::cpu::set_gemm_isa(isa)};
    Generator g(25);
    for (const Config& c : configs()) check_config(c, g);
  }
}

TEST_CASE("conv2d: one thread and two threads give the same results", "[conv2d]") {
  Generator g(22);
  const int saved = omp_get_max_threads();
  // Item counts that select each threading mode: many items (spread), two, three (split), and
  // the implicit-GEMM forward cut into blocks of output rows.
  // Then small images grouped into uneven numbers of chunks, which two threads get in equal
  // shares: 3 chunks become 4 (1x1 at 4 x 4, 16 images per chunk at most), 2 stay 2 (grouped
  // 3x3 at 7 x 7, 18 at most), and 14 wide images into the padded im2col.
  const std::vector<Config> configs = {{4, 64, 6, 6, 64, 3, 3, 1, 1, 1, 1, 2, true},
                                       {2, 8, 16, 16, 16, 1, 1, 1, 1, 0, 0, 1, true},
                                       {3, 3, 16, 17, 4, 3, 3, 1, 1, 1, 1, 1, true},
                                       {1, 8, 13, 40, 8, 3, 3, 1, 1, 1, 1, 1, true},
                                       {40, 512, 4, 4, 8, 1, 1, 1, 1, 0, 0, 1, true},
                                       {37, 64, 7, 7, 16, 3, 3, 1, 1, 1, 1, 4, true},
                                       {7, 32, 14, 14, 8, 3, 3, 1, 1, 1, 1, 1, false},
                                       {33, 64, 1, 1, 64, 3, 3, 1, 1, 1, 1, 4, true},
                                       {33, 64, 4, 4, 64, 3, 3, 1, 1, 1, 1, 4, true},
                                       {35, 96, 1, 1, 160, 1, 1, 1, 1, 0, 0, 1, true}};
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const Config& c : configs) check_config(c, g);
  }
  omp_set_num_threads(saved);
}

TEST_CASE("conv2d: repeated runs on two threads give the same bits", "[conv2d]") {
  // The weight gradient sums over chunks in per-thread partials: the chunks each thread gets,
  // and so the order of the sums, must not depend on timing.
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  for (const Config& c : {Config{37, 64, 7, 7, 16, 3, 3, 1, 1, 1, 1, 4, true},
                          Config{40, 96, 4, 4, 32, 1, 1, 1, 1, 0, 0, 1, true},
                          Config{9, 32, 14, 14, 16, 3, 3, 1, 1, 1, 1, 1, false},
                          Config{37, 64, 1, 1, 64, 3, 3, 1, 1, 1, 1, 4, true}}) {
    Generator g(26);
    Tensor x = test::random_tensor({c.n, c.cin, c.h, c.w}, g);
    Tensor w = test::random_tensor({c.cout, c.cin / c.groups, c.kh, c.kw}, g);
    Tensor b = test::random_tensor({c.cout}, g);
    std::vector<std::vector<float>> first;
    for (int run = 0; run < 3; ++run) {
      Variable vx(x, true), vw(w, true), vb(b, true);
      Variable y = ops::conv2d(vx, vw, vb, ops::Conv2dOptions{c.sh, c.sw, c.ph, c.pw, c.groups});
      y.backward(Tensor::full(y.shape(), 0.5f));
      std::vector<std::vector<float>> all = {y.data().to_vector(), vx.grad().to_vector(),
                                             vw.grad().to_vector(), vb.grad().to_vector()};
      if (run == 0) first = all;
      for (size_t k = 0; k < all.size(); ++k) REQUIRE(all[k] == first[k]);
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("conv2d: gradients match central differences", "[conv2d][gradcheck]") {
  Generator g(23);
  Tensor x = test::random_tensor({2, 4, 5, 6}, g), w = test::random_tensor({6, 2, 3, 3}, g);
  Tensor b = test::random_tensor({6}, g);
  test::check_gradients(
      [](auto& v) { return ops::conv2d(v[0], v[1], v[2], ops::Conv2dOptions::make(2, 1, 2)); },
      {x, w, b});
  Tensor x1 = test::random_tensor({3, 5, 4, 3}, g), w1 = test::random_tensor({2, 5, 1, 1}, g);
  test::check_gradients(
      [](auto& v) { return ops::conv2d(v[0], v[1], Variable(), ops::Conv2dOptions{}); }, {x1, w1});
}

TEST_CASE("conv2d: only the inputs that require a gradient get one", "[conv2d]") {
  Generator g(24);
  Tensor x = test::random_tensor({2, 3, 6, 6}, g), w = test::random_tensor({4, 3, 3, 3}, g);
  Tensor b = test::random_tensor({4}, g);
  // An image (no gradient) into a trainable layer, and a frozen weight with a trainable bias.
  Variable vx(x, false), vw(w, true), vb(b, true);
  ops::sum(ops::conv2d(vx, vw, vb, ops::Conv2dOptions::make(1, 1))).backward();
  REQUIRE_FALSE(vx.grad().defined());
  REQUIRE(vw.grad().defined());
  Variable fx(x, true), fw(w, false), fb(b, true);
  ops::sum(ops::conv2d(fx, fw, fb, ops::Conv2dOptions::make(1, 1))).backward();
  REQUIRE_FALSE(fw.grad().defined());
  // d sum(y) / d b[c] = number of output positions per channel times the batch.
  NV_REQUIRE_CLOSE(fb.grad(), Tensor::full({4}, 2.0f * 36.0f), 1e-6, 1e-4);
  NV_REQUIRE_CLOSE(vb.grad(), fb.grad(), 0, 0);
}

TEST_CASE("conv2d: bad shapes are refused with the shapes in the message", "[conv2d]") {
  auto conv = [](const Shape& xs, const Shape& ws, const Shape& bs, ops::Conv2dOptions o) {
    Variable x(Tensor::zeros(xs)), w(Tensor::zeros(ws));
    Variable b = bs.empty() ? Variable() : Variable(Tensor::zeros(bs));
    return ops::conv2d(x, w, b, o);
  };
  const auto o1 = ops::Conv2dOptions::make(1, 1);
  REQUIRE_THROWS_WITH(conv({2, 4, 32, 32}, {64, 3, 3, 3}, {}, o1),
                      Catch::Contains("conv2d: weight (64, 3, 3, 3) expects 3 input channels per "
                                      "group, input (2, 4, 32, 32) has 4"));
  REQUIRE_THROWS_WITH(conv({1, 6, 8, 8}, {4, 2, 3, 3}, {}, ops::Conv2dOptions::make(1, 1, 4)),
                      Catch::Contains("conv2d: 4 groups do not divide the 6 channels of input "
                                      "(1, 6, 8, 8)"));
  REQUIRE_THROWS_WITH(conv({1, 6, 8, 8}, {4, 2, 3, 3}, {}, ops::Conv2dOptions::make(1, 1, 3)),
                      Catch::Contains("3 groups do not divide the 4 output channels"));
  REQUIRE_THROWS_WITH(conv({1, 1, 2, 2}, {1, 1, 5, 5}, {}, o1),
                      Catch::Contains("conv2d: kernel 5x5 is larger than the padded input 4x4"));
  REQUIRE_THROWS_WITH(conv({1, 3, 8, 8}, {4, 3, 3, 3}, {3}, o1),
                      Catch::Contains("conv2d: bias must have shape (4,) to match weight "
                                      "(4, 3, 3, 3), got (3,)"));
  REQUIRE_THROWS_WITH(conv({3, 8, 8}, {4, 3, 3, 3}, {}, o1),
                      Catch::Contains("conv2d: input must be (N, C, H, W), got (3, 8, 8)"));
  REQUIRE_THROWS_WITH(conv({1, 3, 8, 8}, {4, 3, 3}, {}, o1),
                      Catch::Contains("conv2d: weight must be (Cout, Cin/groups, kh, kw)"));
  REQUIRE_THROWS_WITH(conv({1, 3, 8, 8}, {4, 3, 3, 3}, {}, ops::Conv2dOptions::make(0, 1)),
                      Catch::Contains("conv2d: stride (0, 0) must be >= 1"));
}

// The CUDA backend against the CPU (test::check_backends).
TEST_CASE("cuda: convolutions match the CPU, incl. MHCA's grouped 3x3", "[cuda]") {
  if (test::skip_without_gpu()) return;
  struct Case {
    Shape x, w;
    int64_t stride, pad, groups;
    bool bias;
  };
  for (const Case& c : {Case{{2, 3, 17, 19}, {8, 3, 3, 3}, 2, 1, 1, false},     // stem
                        Case{{2, 64, 14, 14}, {64, 32, 3, 3}, 1, 1, 2, false},  // MHCA
                        Case{{3, 96, 9, 11}, {96, 32, 3, 3}, 1, 1, 3, false},
                        Case{{2, 40, 7, 5}, {72, 40, 1, 1}, 1, 0, 1, true},  // 1x1 + bias
                        Case{{1, 6, 12, 12}, {4, 3, 5, 5}, 1, 2, 2, true}}) {
    Tensor x = test::seeded_tensor(c.x, 6), w = test::seeded_tensor(c.w, 7, -0.2f, 0.2f),
           b = test::seeded_tensor({c.w[0]}, 8);
    ops::Conv2dOptions o = ops::Conv2dOptions::make(c.stride, c.pad, c.groups);
    if (c.bias) {
      test::check_backends(
          "conv2d+bias", [o](auto& v, Device) { return ops::conv2d(v[0], v[1], v[2], o); },
          {x, w, b}, 1e-4, 1e-4);
    } else {
      test::check_backends(
          "conv2d", [o](auto& v, Device) { return ops::conv2d(v[0], v[1], {}, o); }, {x, w}, 1e-4,
          1e-4);
    }
  }
}
