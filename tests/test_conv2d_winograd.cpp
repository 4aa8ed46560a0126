// The Winograd convolution F(2x2, 3x3) (kernels/cpu/conv_winograd.cpp): which shapes it takes,
// against a double-precision convolution (conv_test_util.h: plain, bias, the fused BatchNorm +
// ReLU and residual epilogue) at Next-ViT-S's MHCA and stem sizes, odd, non-square and narrow
// maps, paddings 0 to 2, several groups and batch > 1; the same bits on both x86 ISA families,
// on one and two threads, and for an image alone and inside a batch; near the direct kernel's
// result. tests/fuzz/fuzz_conv_winograd.cpp draws many more shapes.
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
  int64_t n, cin, h, w, cout, pad, groups;
};

Conv2dShape shape_of(const Case& c) {
  Conv2dShape s;
  s.batch = c.n;
  s.in_channels = c.cin;
  s.in_h = c.h;
  s.in_w = c.w;
  s.out_channels = c.cout;
  s.kernel_h = s.kernel_w = 3;
  s.pad_h = s.pad_w = c.pad;
  s.groups = c.groups;
  return s;
}

struct Inputs {
  std::vector<float> x, w, b, scale, shift, residual;
};

Inputs inputs_for(const Conv2dShape& s, uint64_t seed) {
  Inputs in;
  in.x = random_floats(size_t(s.batch * s.in_channels * s.in_h * s.in_w), seed);
  in.w = random_floats(size_t(s.out_channels * s.in_channels / s.groups * 9), seed + 1);
  in.b = random_floats(size_t(s.out_channels), seed + 2);
  in.scale = random_floats(size_t(s.out_channels), seed + 3);
  in.shift = random_floats(size_t(s.out_channels), seed + 4);
  in.residual = random_floats(size_t(s.batch * s.out_channels * s.out_h() * s.out_w()), seed + 5);
  return in;
}

// The epilogue of variant 0 (none), 1 (bias only: the caller passes b), 2 (BatchNorm affine and
// ReLU), 3 (affine, ReLU and a residual).
kernels::cpu::Conv2dEpilogue epilogue(const Inputs& in, int variant) {
  kernels::cpu::Conv2dEpilogue e;
  if (variant >= 2) e = {in.scale.data(), in.shift.data(), true};
  if (variant == 3) e.residual = in.residual.data();
  return e;
}

std::vector<float> forward(const Conv2dShape& s, const Inputs& in, bool bias,
                           const kernels::cpu::Conv2dEpilogue& e) {
  std::vector<float> y(size_t(s.batch * s.out_channels * s.out_h() * s.out_w()), NAN);
  kernels::cpu::conv2d_forward_fused(s, in.x.data(), in.w.data(), bias ? in.b.data() : nullptr, e,
                                     y.data());
  return y;
}

// Restores the GEMM ISA family, the Winograd switch and the thread count even when a check
// fails.
struct Restore {
  GemmIsa isa = kernels::cpu::gemm_isa();
  bool winograd = kernels::cpu::set_conv_winograd(true);
  int threads = omp_get_max_threads();
  ~Restore() {
    kernels::cpu::set_gemm_isa(isa);
    kernels::cpu::set_conv_winograd(winograd);
    omp_set_num_threads(threads);
  }
};

std::vector<GemmIsa> x86_isas() {
  std::vector<GemmIsa> isas;
  for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2}) {
    if (kernels::cpu::gemm_isa_runs_here(isa)) isas.push_back(isa);
  }
  return isas;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> list = {
      // n cin   h    w cout pad groups
      {1, 96, 56, 56, 96, 1, 3},     // Next-ViT-S MHCA, stage 1
      {1, 192, 28, 28, 192, 1, 6},   // stage 2
      {1, 384, 14, 14, 384, 1, 12},  // stage 3
      {1, 64, 112, 112, 32, 1, 1},   // the stem's 64 -> 32 (and below its 32 -> 64, smaller)
      {1, 32, 40, 36, 64, 1, 1},
      {3, 64, 15, 17, 64, 1, 2},  // batch 3, odd sizes: a half-filled last tile row and column
      {2, 16, 9, 30, 8, 1, 1},    // 8 outputs, rows of 15 tiles, 16 inputs (one AVX-512 vector)
      {1, 13, 6, 14, 16, 1, 1},   // 13 inputs: the weights' transform's one-channel tail
      {1, 24, 17, 16, 24, 0, 3},  // no padding
      {1, 16, 11, 13, 16, 2, 1},  // padding 2
      {2, 40, 2, 33, 40, 1, 5},   // two rows: a single tile row
      {1, 32, 64, 70, 32, 1, 1},  // several items a thread, rows of 35 tiles
  };
  return list;
}

}  // namespace

TEST_CASE("conv winograd: takes 3x3 stride-1 maps at least 14 wide, leaves others",
          "[conv2d][winograd]") {
  Restore restore;
  for (GemmIsa isa : x86_isas()) {
    kernels::cpu::set_gemm_isa(isa);
    INFO(kernels::cpu::gemm_isa_name(isa));
    for (const Case& c : cases()) CHECK(kernels::cpu::conv_winograd_applies(shape_of(c)));
    Conv2dShape s = shape_of({1, 96, 56, 56, 96, 1, 3});
    s.stride_h = s.stride_w = 2;
    CHECK_FALSE(kernels::cpu::conv_winograd_applies(s));  // stride 2
    s = shape_of({1, 96, 56, 56, 96, 1, 3});
    s.kernel_h = s.kernel_w = 5;
    s.pad_h = s.pad_w = 2;
    CHECK_FALSE(kernels::cpu::conv_winograd_applies(s));  // 5x5
    CHECK_FALSE(kernels::cpu::conv_winograd_applies(shape_of({1, 768, 7, 7, 768, 1, 24})));
    CHECK_FALSE(kernels::cpu::conv_winograd_applies(shape_of({1, 16, 20, 13, 16, 1, 1})));
    CHECK_FALSE(kernels::cpu::conv_winograd_applies(shape_of({1, 48, 20, 20, 12, 1, 1})));
    CHECK_FALSE(kernels::cpu::conv_winograd_applies(shape_of({1, 16, 20, 20, 16, 3, 1})));
    kernels::cpu::set_conv_winograd(false);
    CHECK_FALSE(kernels::cpu::conv_winograd_applies(shape_of(cases()[0])));
    kernels::cpu::set_conv_winograd(true);
  }
  if (kernels::cpu::gemm_isa_runs_here(GemmIsa::kPortable)) {
    kernels::cpu::set_gemm_isa(GemmIsa::kPortable);
    CHECK_FALSE(kernels::cpu::conv_winograd_applies(shape_of(cases()[0])));
  }
}

TEST_CASE("conv winograd: matches a double-precision convolution, with and without the epilogue",
          "[conv2d][winograd]") {
  Restore restore;
  uint64_t seed = 11;
  for (GemmIsa isa : x86_isas()) {
    kernels::cpu::set_gemm_isa(isa);
    for (const Case& c : cases()) {
      const Conv2dShape s = shape_of(c);
      const Inputs in = inputs_for(s, seed += 7);
      for (int variant = 0; variant < 4; ++variant) {
        const kernels::cpu::Conv2dEpilogue e = epilogue(in, variant);
        const bool bias = variant > 0;
        INFO(kernels::cpu::gemm_isa_name(isa)
             << " n=" << c.n << " cin=" << c.cin << " " << c.h << "x" << c.w << " cout=" << c.cout
             << " pad=" << c.pad << " groups=" << c.groups << " epilogue variant " << variant);
        const std::vector<float> y = forward(s, in, bias, e);
        // The direct kernel's bound (tests/test_conv2d_direct.cpp) holds here too: the
        // transforms add a few roundings of terms no larger than the products' sum's.
        CHECK(worst_error(y, reference(s, in.x, in.w, bias ? in.b.data() : nullptr, e)) < 2e-5);
      }
    }
  }
}

TEST_CASE("conv winograd: the same bits on both ISA families, on 1 and 2 threads, near direct",
          "[conv2d][winograd]") {
  Restore restore;
  const std::vector<GemmIsa> isas = x86_isas();
  if (isas.empty()) return;  // (no x86 family: nothing takes the Winograd kernel)
  uint64_t seed = 70;
  for (const Case& c : cases()) {
    const Conv2dShape s = shape_of(c);
    const Inputs in = inputs_for(s, seed += 7);
    const kernels::cpu::Conv2dEpilogue e = epilogue(in, 3);
    INFO("n=" << c.n << " cin=" << c.cin << " " << c.h << "x" << c.w << " groups=" << c.groups);
    kernels::cpu::set_gemm_isa(isas[0]);
    omp_set_num_threads(1);
    const std::vector<float> first = forward(s, in, true, e);
    for (GemmIsa isa : isas) {
      kernels::cpu::set_gemm_isa(isa);
      for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        INFO(kernels::cpu::gemm_isa_name(isa) << " on " << threads << " thread(s)");
        CHECK(forward(s, in, true, e) == first);
      }
    }
    kernels::cpu::set_conv_winograd(false);
    const std::vector<float> direct = forward(s, in, true, e);
    kernels::cpu::set_conv_winograd(true);
    CHECK(worst_error(first, std::vector<double>(direct.begin(), direct.end())) < 2e-5);
  }
}

TEST_CASE("conv winograd: an image gives the same bits alone as inside a batch",
          "[conv2d][winograd]") {
  // As for the direct kernel: data-parallel training relies on it, and the items' blocks of
  // tile rows are planned from the batch size and the thread count.
  Restore restore;
  uint64_t seed = 500;
  for (GemmIsa isa : x86_isas()) {
    kernels::cpu::set_gemm_isa(isa);
    for (const Case& c : cases()) {
      Case cn = c;
      cn.n = 4;
      const Conv2dShape s = shape_of(cn);
      const Inputs in = inputs_for(s, seed += 7);
      const std::vector<float> batch = forward(s, in, true, epilogue(in, 2));
      Case c1 = c;
      c1.n = 1;
      const Conv2dShape s1 = shape_of(c1);
      const int64_t in_image = c.cin * c.h * c.w, out_image = c.cout * s.out_h() * s.out_w();
      for (int64_t n = 0; n < 4; ++n) {
        Inputs one = in;
        one.x.assign(in.x.begin() + n * in_image, in.x.begin() + (n + 1) * in_image);
        const std::vector<float> alone = forward(s1, one, true, epilogue(one, 2));
        INFO(kernels::cpu::gemm_isa_name(isa) << " " << c.h << "x" << c.w << " image " << n);
        CHECK(std::equal(alone.begin(), alone.end(), batch.begin() + n * out_image));
      }
    }
  }
}
