// Convolutions of one-pixel maps (kernels/cpu/conv_one_pixel.cpp): which shapes take the matrix
// products; the forward with the eval-mode epilogue (bias, BatchNorm affine, ReLU, residual)
// against the definition in double precision, on every GEMM family this CPU runs; all three
// directions against the general path they replace. Forward and gradients through ops::conv2d,
// and one against two threads, are in tests/test_conv2d.cpp.
#include <cmath>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cpu/conv_one_pixel.h"
#include "kernels/gemm.h"
#include "test_util.h"

using namespace nextvit;
using kernels::Conv2dShape;

namespace {

Conv2dShape one_pixel(int64_t n, int64_t cin, int64_t cout, int64_t k, int64_t pad,
                      int64_t groups) {
  Conv2dShape s;
  s.batch = n;
  s.in_channels = cin;
  s.out_channels = cout;
  s.in_h = s.in_w = 1;
  s.kernel_h = s.kernel_w = k;
  s.pad_h = s.pad_w = pad;
  s.groups = groups;
  return s;
}

std::vector<float> floats(size_t n, Generator& g) {
  return test::random_tensor({int64_t(n)}, g).to_vector();
}

}  // namespace

TEST_CASE("conv one pixel: takes 1 x 1 maps in and out whose reading tap is in the kernel",
          "[conv2d]") {
  using kernels::cpu::conv_one_pixel_applies;
  CHECK(conv_one_pixel_applies(one_pixel(128, 256, 256, 3, 1, 16)));  // MHCA at the last stage
  CHECK(conv_one_pixel_applies(one_pixel(128, 256, 768, 1, 0, 1)));   // an MLP's 1x1
  Conv2dShape s = one_pixel(4, 8, 8, 3, 1, 1);
  s.stride_h = s.stride_w = 2;
  CHECK(conv_one_pixel_applies(s));                                  // stride 2: 1 x 1 out
  CHECK_FALSE(conv_one_pixel_applies(one_pixel(4, 8, 8, 3, 2, 1)));  // 3 x 3 out
  CHECK_FALSE(conv_one_pixel_applies(one_pixel(4, 8, 8, 1, 1, 1)));  // 1x1 kernel, pad 1: 3 x 3
  s = one_pixel(4, 8, 8, 3, 1, 1);
  s.in_h = s.in_w = 2;
  CHECK_FALSE(conv_one_pixel_applies(s));  // 2 x 2 map
}

TEST_CASE("conv one pixel: the fused forward matches the definition", "[conv2d]") {
  using kernels::cpu::GemmIsa;
  struct Isa {  // restores the previous choice even when a check fails
    GemmIsa previous = kernels::cpu::gemm_isa();
    ~Isa() { kernels::cpu::set_gemm_isa(previous); }
  } restore;
  for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2, GemmIsa::kPortable}) {
    if (!kernels::cpu::gemm_isa_runs_here(isa)) continue;
    kernels::cpu::set_gemm_isa(isa);
    for (const Conv2dShape& s : {one_pixel(9, 48, 48, 3, 1, 3), one_pixel(7, 40, 24, 1, 0, 1)}) {
      INFO(kernels::cpu::gemm_isa_name(isa)
           << ": kernel " << s.kernel_h << ", groups " << s.groups);
      Generator g(41);
      const int64_t cin_g = s.in_channels / s.groups, cout_g = s.out_channels / s.groups;
      const int64_t taps = s.kernel_h * s.kernel_w, tap = s.pad_h * s.kernel_w + s.pad_w;
      const std::vector<float> x = floats(size_t(s.batch * s.in_channels), g),
                               w = floats(size_t(s.out_channels * cin_g * taps), g),
                               b = floats(size_t(s.out_channels), g),
                               scale = floats(size_t(s.out_channels), g),
                               shift = floats(size_t(s.out_channels), g),
                               residual = floats(size_t(s.batch * s.out_channels), g);
      kernels::cpu::Conv2dEpilogue e;
      e.scale = scale.data();
      e.shift = shift.data();
      e.relu = true;
      e.residual = residual.data();
      std::vector<float> y(size_t(s.batch * s.out_channels), NAN);
      kernels::cpu::conv2d_forward_fused(s, x.data(), w.data(), b.data(), e, y.data());
      int negatives = 0;
      for (int64_t n = 0; n < s.batch; ++n) {
        for (int64_t co = 0; co < s.out_channels; ++co) {
          double acc = b[size_t(co)];
          for (int64_t ci = 0; ci < cin_g; ++ci) {
            acc += double(x[size_t(n * s.in_channels + co / cout_g * cin_g + ci)]) *
                   w[size_t((co * cin_g + ci) * taps + tap)];
          }
          acc = acc * scale[size_t(co)] + shift[size_t(co)];
          negatives += acc < 0.0;
          const double want = std::max(acc, 0.0) + residual[size_t(n * s.out_channels + co)];
          REQUIRE(std::fabs(y[size_t(n * s.out_channels + co)] - want) <
                  1e-5 * (1 + std::fabs(want)));
        }
      }
      CHECK(negatives > 0);  // the ReLU was exercised
    }
  }
}

TEST_CASE("conv one pixel: all three directions agree with the general path it replaces",
          "[conv2d]") {
  struct Restore {  // turns the products back on even when a check fails
    ~Restore() { kernels::cpu::set_conv_one_pixel(true); }
  } restore;
  for (const Conv2dShape& s : {one_pixel(10, 64, 64, 3, 1, 4), one_pixel(6, 48, 80, 1, 0, 1)}) {
    INFO("kernel " << s.kernel_h << ", groups " << s.groups);
    Generator g(43);
    const int64_t taps = s.kernel_h * s.kernel_w;
    const size_t nx = size_t(s.batch * s.in_channels), ny = size_t(s.batch * s.out_channels);
    const size_t nw = size_t(s.out_channels * s.in_channels / s.groups * taps);
    const std::vector<float> x = floats(nx, g), w = floats(nw, g), dy = floats(ny, g);
    std::vector<float> out[2][3];
    for (int on = 0; on < 2; ++on) {
      kernels::cpu::set_conv_one_pixel(on == 1);
      REQUIRE(kernels::cpu::conv_one_pixel_applies(s) == (on == 1));
      out[on][0].assign(ny, NAN);
      out[on][1].assign(nx, NAN);
      out[on][2].assign(nw, NAN);
      kernels::cpu::conv2d_forward(s, x.data(), w.data(), nullptr, out[on][0].data(), nullptr);
      kernels::cpu::conv2d_backward_data(s, dy.data(), w.data(), out[on][1].data(), nullptr);
      kernels::cpu::conv2d_backward_weight(s, x.data(), dy.data(), out[on][2].data(), nullptr,
                                           nullptr);
    }
    for (int d = 0; d < 3; ++d) {
      INFO("direction " << d << " (forward, input gradient, weight gradient)");
      for (size_t i = 0; i < out[0][d].size(); ++i) {
        REQUIRE(std::fabs(out[1][d][i] - out[0][d][i]) <= 1e-5 * (1 + std::fabs(out[0][d][i])));
      }
    }
  }
}
