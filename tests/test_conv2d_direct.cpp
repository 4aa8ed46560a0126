// The direct forward convolution for small groups (kernels/cpu/conv_direct.cpp): against a
// double-precision convolution (conv_test_util.h) and against the GEMM paths it replaces, at
// Next-ViT-S's four MHCA sizes, batch 1 and > 1, odd and non-square images, other kernel
// sizes, paddings and group widths, stride 2 (the stem's 64 -> 64, split into column and row
// phases), the fused epilogue, both x86 ISA families, and the same bits on one and two threads;
// the input gradient (a forward convolution) through it too.
#include <omp.h>

#include <cmath>
#include <vector>

#include "conv_test_util.h"
#include "kernels/conv2d.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/gemm.h"
#include "test_util.h"

using namespace nextvit;
using conv_test::random_floats;
using conv_test::reference;
using conv_test::worst_error;
using kernels::Conv2dShape;
using kernels::cpu::GemmIsa;

namespace {

struct Case {
  int64_t n, cin, h, w, cout, kh, kw, ph, pw, groups, stride = 1;
};

Conv2dShape shape_of(const Case& c) {
  Conv2dShape s;
  s.batch = c.n;
  s.in_channels = c.cin;
  s.in_h = c.h;
  s.in_w = c.w;
  s.out_channels = c.cout;
  s.kernel_h = c.kh;
  s.kernel_w = c.kw;
  s.pad_h = c.ph;
  s.pad_w = c.pw;
  s.groups = c.groups;
  s.stride_h = s.stride_w = c.stride;
  return s;
}

struct Inputs {
  std::vector<float> x, w, b, scale, shift;
};

Inputs inputs_for(const Conv2dShape& s, uint64_t seed) {
  Inputs in;
  in.x = random_floats(size_t(s.batch * s.in_channels * s.in_h * s.in_w), seed);
  in.w = random_floats(size_t(s.out_channels * s.in_channels / s.groups * s.kernel_h * s.kernel_w),
                       seed + 1);
  in.b = random_floats(size_t(s.out_channels), seed + 2);
  in.scale = random_floats(size_t(s.out_channels), seed + 3);
  in.shift = random_floats(size_t(s.out_channels), seed + 4);
  return in;
}

std::vector<float> forward(const Conv2dShape& s, const Inputs& in, bool bias,
                           const kernels::cpu::Conv2dEpilogue& e) {
  std::vector<float> y(size_t(s.batch * s.out_channels * s.out_h() * s.out_w()), NAN);
  kernels::cpu::conv2d_forward_fused(s, in.x.data(), in.w.data(), bias ? in.b.data() : nullptr, e,
                                     y.data());
  return y;
}

// Restores the GEMM ISA family and the direct kernel's switch even when a check fails; the
// Winograd kernel, which would take the 3x3 stride-1 shapes ahead of the direct one, stays off
// meanwhile (tests/test_conv2d_winograd.cpp).
struct Restore {
  GemmIsa isa = kernels::cpu::gemm_isa();
  bool direct = kernels::cpu::set_conv_direct(true);
  bool winograd = kernels::cpu::set_conv_winograd(false);
  int threads = omp_get_max_threads();
  ~Restore() {
    kernels::cpu::set_gemm_isa(isa);
    kernels::cpu::set_conv_direct(direct);
    kernels::cpu::set_conv_winograd(winograd);
    omp_set_num_threads(threads);
  }
};

std::vector<GemmIsa> direct_isas() {
  std::vector<GemmIsa> isas;
  for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2}) {
    if (kernels::cpu::gemm_isa_runs_here(isa)) isas.push_back(isa);
  }
  return isas;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> list = {
      // n cin  h   w cout kh kw ph pw groups
      {1, 96, 56, 56, 96, 3, 3, 1, 1, 3},     // Next-ViT-S MHCA, stage 1
      {1, 192, 28, 28, 192, 3, 3, 1, 1, 6},   // stage 2
      {1, 384, 14, 14, 384, 3, 3, 1, 1, 12},  // stage 3
      {1, 768, 7, 7, 768, 3, 3, 1, 1, 24},    // stage 4
      {3, 64, 14, 14, 64, 3, 3, 1, 1, 2},     // batch > 1
      {2, 64, 9, 13, 64, 3, 3, 1, 1, 2},      // odd, non-square
      {2, 32, 1, 20, 32, 3, 3, 1, 1, 1},      // a single row
      {1, 32, 20, 1, 32, 3, 3, 1, 1, 1},      // a single column
      {2, 48, 11, 10, 24, 3, 3, 1, 1, 3},     // 16 in, 8 out per group
      {1, 40, 8, 19, 64, 5, 5, 2, 2, 1},      // 5x5, 64 outputs, 40 inputs
      {2, 8, 7, 12, 16, 2, 4, 0, 2, 1},       // even kernel, unequal padding
      {1, 16, 9, 9, 16, 3, 3, 0, 0, 2},       // no padding
      {1, 16, 5, 5, 16, 3, 3, 3, 3, 1},       // padding as large as the kernel
      {2, 16, 33, 70, 8, 3, 1, 1, 0, 1},      // wide rows, 3x1 kernel
      // stride 2: phases (column parity from pad 1: odd first column; pad 0 and 2: even)
      {1, 64, 30, 34, 64, 3, 3, 1, 1, 1, 2},  // the stem's 64 -> 64, smaller
      {2, 16, 13, 11, 16, 3, 3, 1, 1, 1, 2},  // odd sizes
      {1, 24, 9, 20, 8, 3, 3, 0, 0, 1, 2},    // no padding
      {1, 8, 15, 17, 16, 5, 5, 2, 2, 1, 2},   // 5x5, padding 2
      {1, 16, 10, 11, 16, 2, 2, 0, 0, 1, 2},  // 2x2, 64 steps of k
      {1, 16, 6, 75, 8, 3, 3, 1, 1, 1, 2},    // rows of 75: two 32-float chunks and a tail
      {3, 64, 9, 9, 64, 3, 3, 1, 1, 2, 2},    // grouped, batch 3
  };
  return list;
}

}  // namespace

TEST_CASE("conv direct: serves MHCA shapes, leaves others to the GEMM paths", "[conv2d][direct]") {
  Restore restore;
  for (GemmIsa isa : direct_isas()) {
    kernels::cpu::set_gemm_isa(isa);
    // Up to 64 outputs per group on AVX-512, on AVX2 32 at stride 1 (the 5x5 case has 64) and
    // 64 at stride 2 (the stem's 64 -> 64).
    for (const Case& c : cases()) {
      const int64_t max_cout = isa == GemmIsa::kAvx512 || c.stride == 2 ? 64 : 32;
      INFO(kernels::cpu::gemm_isa_name(isa)
           << " cout=" << c.cout << " groups=" << c.groups << " stride " << c.stride);
      REQUIRE(kernels::cpu::conv_direct_applies(shape_of(c)) == (c.cout / c.groups <= max_cout));
    }
    CHECK(kernels::cpu::conv_direct_applies(shape_of(  // the stem's 64 -> 64
        {1, 64, 112, 112, 64, 3, 3, 1, 1, 1, 2})));
    CHECK_FALSE(kernels::cpu::conv_direct_applies(shape_of(  // 128 outputs per
        {1, 64, 16, 16, 128, 3, 3, 1, 1, 1, 2})));           // group, stride 2
    Conv2dShape s = shape_of({1, 96, 56, 56, 96, 3, 3, 1, 1, 3});
    s.stride_h = s.stride_w = 3;
    CHECK_FALSE(kernels::cpu::conv_direct_applies(s));  // stride 3
    s.stride_h = 1, s.stride_w = 2;
    CHECK_FALSE(kernels::cpu::conv_direct_applies(s));       // unequal strides
    CHECK_FALSE(kernels::cpu::conv_direct_applies(shape_of(  // stride 2, 27 steps of k
        {1, 3, 32, 32, 64, 3, 3, 1, 1, 1, 2})));
    CHECK_FALSE(kernels::cpu::conv_direct_applies(shape_of(  // 12 outputs
        {1, 24, 8, 8, 12, 3, 3, 1, 1, 1})));                 // per group
    CHECK_FALSE(kernels::cpu::conv_direct_applies(shape_of(  // 128 outputs
        {1, 64, 8, 8, 128, 3, 3, 1, 1, 1})));                // per group
    CHECK_FALSE(kernels::cpu::conv_direct_applies(shape_of(  // 1x1
        {1, 32, 8, 8, 32, 1, 1, 0, 0, 1})));
    CHECK_FALSE(kernels::cpu::conv_direct_applies(shape_of(  // a 4 x 4 map, any
        {1, 64, 4, 4, 64, 3, 3, 1, 1, 4})));                 // batch
    CHECK_FALSE(kernels::cpu::conv_direct_applies(shape_of(  // 1 x 16
        {128, 64, 1, 16, 64, 3, 3, 1, 1, 4})));
    CHECK(kernels::cpu::conv_direct_applies(shape_of(  // 1 x 17
        {1, 64, 1, 17, 64, 3, 3, 1, 1, 4})));
    kernels::cpu::set_conv_direct(false);
    CHECK_FALSE(kernels::cpu::conv_direct_applies(shape_of(cases()[0])));
    kernels::cpu::set_conv_direct(true);
  }
  if (kernels::cpu::gemm_isa_runs_here(GemmIsa::kPortable)) {
    kernels::cpu::set_gemm_isa(GemmIsa::kPortable);
    CHECK_FALSE(kernels::cpu::conv_direct_applies(shape_of(cases()[0])));
  }
}

TEST_CASE("conv direct: matches a double-precision convolution, with and without the epilogue",
          "[conv2d][direct]") {
  Restore restore;
  uint64_t seed = 40;
  for (GemmIsa isa : direct_isas()) {
    kernels::cpu::set_gemm_isa(isa);
    for (const Case& c : cases()) {
      const Conv2dShape s = shape_of(c);
      const Inputs in = inputs_for(s, seed += 5);
      for (int variant = 0; variant < 3; ++variant) {
        // 0: plain; 1: bias; 2: bias, BatchNorm affine and ReLU.
        kernels::cpu::Conv2dEpilogue e;
        if (variant == 2) e = {in.scale.data(), in.shift.data(), true};
        const bool bias = variant > 0;
        INFO(kernels::cpu::gemm_isa_name(isa)
             << " n=" << c.n << " cin=" << c.cin << " " << c.h << "x" << c.w << " cout=" << c.cout
             << " k=" << c.kh << "x" << c.kw << " pad=" << c.ph << "," << c.pw
             << " groups=" << c.groups << " epilogue variant " << variant);
        const std::vector<float> y = forward(s, in, bias, e);
        CHECK(worst_error(y, reference(s, in.x, in.w, bias ? in.b.data() : nullptr, e)) < 2e-5);
      }
    }
  }
}

TEST_CASE("conv direct: agrees with the GEMM paths and gives the same bits on 1 and 2 threads",
          "[conv2d][direct]") {
  Restore restore;
  uint64_t seed = 90;
  for (GemmIsa isa : direct_isas()) {
    kernels::cpu::set_gemm_isa(isa);
    for (const Case& c : cases()) {
      for (int64_t n : {int64_t{1}, int64_t{4}}) {
        Case cn = c;
        cn.n = n;
        const Conv2dShape s = shape_of(cn);
        const Inputs in = inputs_for(s, seed += 5);
        const kernels::cpu::Conv2dEpilogue e{in.scale.data(), in.shift.data(), true};
        INFO(kernels::cpu::gemm_isa_name(isa) << " n=" << n << " cin=" << c.cin << " " << c.h << "x"
                                              << c.w << " groups=" << c.groups);
        omp_set_num_threads(1);
        const std::vector<float> one = forward(s, in, true, e);
        omp_set_num_threads(2);
        const std::vector<float> two = forward(s, in, true, e);
        CHECK(one == two);
        kernels::cpu::set_conv_direct(false);
        const std::vector<float> gemm = forward(s, in, true, e);
        kernels::cpu::set_conv_direct(true);
        CHECK(worst_error(two, std::vector<double>(gemm.begin(), gemm.end())) < 2e-5);
      }
    }
  }
}

TEST_CASE("conv direct: the input gradient of MHCA (a forward convolution) matches the GEMM path",
          "[conv2d][direct]") {
  Restore restore;
  for (GemmIsa isa : direct_isas()) {
    kernels::cpu::set_gemm_isa(isa);
    for (const Case& c :
         {Case{2, 96, 28, 28, 96, 3, 3, 1, 1, 3}, Case{2, 64, 7, 9, 64, 3, 3, 1, 1, 2}}) {
      const Conv2dShape s = shape_of(c);
      const Inputs in = inputs_for(s, 7);
      const std::vector<float> dy =
          random_floats(size_t(s.batch * s.out_channels * s.out_h() * s.out_w()), 8);
      std::vector<float> direct(in.x.size()), gemm(in.x.size());
      kernels::cpu::conv2d_backward_data(s, dy.data(), in.w.data(), direct.data(), nullptr);
      kernels::cpu::set_conv_direct(false);
      kernels::cpu::conv2d_backward_data(s, dy.data(), in.w.data(), gemm.data(), nullptr);
      kernels::cpu::set_conv_direct(true);
      INFO(kernels::cpu::gemm_isa_name(isa) << " " << c.h << "x" << c.w);
      CHECK(worst_error(direct, std::vector<double>(gemm.begin(), gemm.end())) < 2e-5);
    }
  }
}

TEST_CASE("conv direct: an image gives the same bits alone as inside a batch", "[conv2d][direct]") {
  // Data-parallel training relies on it: 2 ranks with 8 images each must compute what 1 rank
  // computes for the same images in a batch of 16 (tests/mpi), and the items' row blocks are
  // planned from the batch size and the thread count.
  Restore restore;
  uint64_t seed = 300;
  for (GemmIsa isa : direct_isas()) {
    kernels::cpu::set_gemm_isa(isa);
    for (const Case& c : cases()) {
      Case cn = c;
      cn.n = 5;
      const Conv2dShape s = shape_of(cn);
      const Inputs in = inputs_for(s, seed += 5);
      const kernels::cpu::Conv2dEpilogue e{in.scale.data(), in.shift.data(), true};
      const std::vector<float> batch = forward(s, in, true, e);
      Conv2dShape one = s;
      one.batch = 1;
      Inputs last = in;  // the batch's last image alone
      const size_t xi = in.x.size() / 5, yi = batch.size() / 5;
      last.x.assign(in.x.end() - std::ptrdiff_t(xi), in.x.end());
      for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        const std::vector<float> alone = forward(one, last, true, e);
        INFO(kernels::cpu::gemm_isa_name(isa)
             << " cin=" << c.cin << " " << c.h << "x" << c.w << " stride " << c.stride << ", "
             << threads << " thread(s)");
        CHECK(std::equal(alone.begin(), alone.end(), batch.end() - std::ptrdiff_t(yi)));
      }
    }
  }
}
