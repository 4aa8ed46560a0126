// ops::avg_pool2d, ops::avg_pool1d and ops::global_avg_pool: forward against a reference written
// here and against PyTorch values (ceil_mode and count_include_pad edge cases), gradients by
// central differences, and the errors for bad input.
#include <cmath>

#include "test_util.h"

using namespace nextvit;

namespace {

// nn.AvgPool2d spelled out: a window is kernel x kernel positions of the zero-padded input; the
// padded region ends at H + pad, so with ceil_mode a window hanging past it counts only the
// positions inside (count_include_pad) or only the real input cells (otherwise).
int64_t reference_out_size(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  const double q = double(in + 2 * p - k) / double(s);
  int64_t out = static_cast<int64_t>(ceil_mode ? std::ceil(q) : std::floor(q)) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

Tensor reference_avg_pool2d(const Tensor& x, const ops::AvgPool2dOptions& o) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = reference_out_size(H, o.kernel, o.stride, o.padding, o.ceil_mode);
  const int64_t OW = reference_out_size(W, o.kernel, o.stride, o.padding, o.ceil_mode);
  const std::vector<float> xv = x.to_vector();
  std::vector<float> y;
  for (int64_t p = 0; p < N * C; ++p)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double sum = 0;
        int64_t padded = 0, real = 0;
        for (int64_t i = oh * o.stride - o.padding; i < oh * o.stride - o.padding + o.kernel; ++i)
          for (int64_t j = ow * o.stride - o.padding; j < ow * o.stride - o.padding + o.kernel;
               ++j) {
            if (i >= H + o.padding || j >= W + o.padding) continue;  // beyond the padding
            ++padded;
            if (i < 0 || j < 0 || i >= H || j >= W) continue;  // in the padding
            ++real;
            sum += xv[(p * H + i) * W + j];
          }
        const int64_t div = o.count_include_pad ? padded : real;
        y.push_back(real == 0 ? 0.0f : static_cast<float>(sum / div));
      }
  return Tensor::from_vector(y, {N, C, OH, OW});
}

ops::AvgPool2dOptions pool(int64_t k, int64_t s, int64_t p, bool ceil_mode, bool include_pad) {
  ops::AvgPool2dOptions o;
  o.kernel = k;
  o.stride = s;
  o.padding = p;
  o.ceil_mode = ceil_mode;
  o.count_include_pad = include_pad;
  return o;
}

Tensor arange(int64_t n, const Shape& shape) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = float(i);
  return Tensor::from_vector(v, shape);
}

}  // namespace

TEST_CASE("avg_pool2d: matches a reference over kernels strides padding and modes", "[pooling]") {
  Generator g(21);
  for (const Shape& shape : {Shape{2, 3, 7, 7}, Shape{1, 2, 5, 8}, Shape{1, 1, 1, 1},
                             Shape{2, 1, 6, 3}, Shape{1, 2, 4, 4}}) {
    Tensor x = test::random_tensor(shape, g);
    for (int64_t k : {1, 2, 3})
      for (int64_t s : {1, 2, 3})
        for (int64_t p = 0; p <= k / 2; ++p)
          for (bool ceil_mode : {false, true})
            for (bool include_pad : {false, true}) {
              const ops::AvgPool2dOptions o = pool(k, s, p, ceil_mode, include_pad);
              if (reference_out_size(shape[2], k, s, p, ceil_mode) < 1 ||
                  reference_out_size(shape[3], k, s, p, ceil_mode) < 1) {
                continue;  // the window does not fit: covered by the error test
              }
              INFO("input " << shape_str(shape) << " k " << k << " s " << s << " p " << p
                            << " ceil " << ceil_mode << " count_include_pad " << include_pad);
              Variable y = ops::avg_pool2d(Variable(x), o);
              NV_REQUIRE_CLOSE(y.data(), reference_avg_pool2d(x, o), 1e-6, 1e-6);
            }
  }
}

TEST_CASE("avg_pool2d: many planes split across threads match the reference", "[pooling]") {
  Generator g(25);
  Tensor x = test::random_tensor({2, 16, 33, 35}, g);
  for (const ops::AvgPool2dOptions& o : {pool(2, 2, 0, true, false), pool(3, 2, 1, false, true)}) {
    Variable xv(x, true);
    Variable y = ops::avg_pool2d(xv, o);
    NV_REQUIRE_CLOSE(y.data(), reference_avg_pool2d(x, o), 1e-6, 1e-6);
    // Pooling is linear, y = A x, so its backward A^T must satisfy <dy, A x> = <A^T dy, x>.
    Tensor dy = test::random_tensor(y.shape(), g);
    y.backward(dy);
    const std::vector<float> yv = y.data().to_vector(), dyv = dy.to_vector(), xs = x.to_vector(),
                             dx = xv.grad().to_vector();
    double lhs = 0, rhs = 0;
    for (size_t i = 0; i < yv.size(); ++i) lhs += double(yv[i]) * dyv[i];
    for (size_t i = 0; i < xs.size(); ++i) rhs += double(xs[i]) * dx[i];
    REQUIRE(rhs == Approx(lhs).epsilon(1e-5));
  }
}

TEST_CASE("avg_pool2d: windows that tile the input give the generic order's bits", "[pooling]") {
  // Stride == kernel without padding takes the kernel's vectorised path (kernels/cpu/
  // pooling.cpp); its sums must be the generic loop's, float by float: per output, the window's
  // rows added into a row from 0.0f, then that row's window columns added from 0.0f, divided by
  // kernel_h * kernel_w.
  auto reference = [](const Tensor& x, int64_t kh, int64_t kw) {
    const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
    const int64_t OH = H / kh, OW = W / kw;
    const std::vector<float> xv = x.to_vector();
    std::vector<float> y;
    for (int64_t p = 0; p < P; ++p)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          float sum = 0.0f;
          for (int64_t j = ow * kw; j < (ow + 1) * kw; ++j) {
            float column = 0.0f;
            for (int64_t i = oh * kh; i < (oh + 1) * kh; ++i) column += xv[(p * H + i) * W + j];
            sum += column;
          }
          y.push_back(sum / static_cast<float>(kh * kw));
        }
    return Tensor::from_vector(y, {x.size(0), x.size(1), OH, OW});
  };
  Generator g(26);
  struct Case {
    Shape shape;
    int64_t k;
  };
  // Odd sizes leave columns and rows that no window covers; 16 x 33 planes split over threads.
  for (const Case& c : {Case{{1, 96, 8, 8}, 2}, Case{{2, 16, 7, 9}, 2}, Case{{1, 3, 9, 10}, 3},
                        Case{{2, 5, 4, 4}, 1}, Case{{2, 16, 33, 35}, 4}}) {
    INFO("input " << shape_str(c.shape) << " kernel = stride = " << c.k);
    Tensor x = test::random_tensor(c.shape, g);
    Variable y = ops::avg_pool2d(Variable(x), pool(c.k, c.k, 0, false, true));
    REQUIRE(y.data().to_vector() == reference(x, c.k, c.k).to_vector());
  }
  // E-MHSA's 1 x sr^2 windows over tokens, as avg_pool1d.
  for (int64_t k : {4, 16}) {
    Tensor x = test::random_tensor({1, 24, 49 * k / 4 + 3}, g);
    Variable y = ops::avg_pool1d(Variable(x), k, k);
    REQUIRE(y.data().to_vector() == reference(x.reshape({1, 24, 1, x.size(2)}), 1, k).to_vector());
  }
  // A window of negative zeros averages to +0.0, as the generic loop (and PyTorch) give.
  Tensor zeros = Tensor::from_vector(std::vector<float>(16, -0.0f), {1, 1, 4, 4});
  for (float v : ops::avg_pool2d(Variable(zeros), pool(2, 2, 0, false, true)).data().to_vector()) {
    REQUIRE(v == 0.0f);
    REQUIRE_FALSE(std::signbit(v));
  }
}

TEST_CASE("avg_pool2d: ceil_mode edge cases equal PyTorch's values", "[pooling]") {
  // Every constant below is torch.nn.functional.avg_pool2d(torch.arange(n).reshape(...), ...)
  // printed by torch 2.x.
  SECTION("7x7 with a 2x2 window becomes 4x4, the last row and column pooled alone") {
    Tensor x = arange(49, {1, 1, 7, 7});
    const std::vector<float> expected{4.0f,  6.0f,  8.0f,  9.5f,  18.0f, 20.0f, 22.0f, 23.5f,
                                      32.0f, 34.0f, 36.0f, 37.5f, 42.5f, 44.5f, 46.5f, 48.0f};
    for (bool include_pad : {true, false}) {
      Variable y = ops::avg_pool2d(Variable(x), pool(2, 2, 0, true, include_pad));
      NV_REQUIRE_CLOSE(y.data(), Tensor::from_vector(expected, {1, 1, 4, 4}), 1e-6, 0);
    }
    // Without ceil_mode the last row and column are dropped.
    REQUIRE(ops::avg_pool2d(Variable(x), pool(2, 2, 0, false, true)).shape() == Shape{1, 1, 3, 3});
  }
  SECTION("7x7 with a padded 3x3 window, stride 2") {
    Variable y = ops::avg_pool2d(Variable(arange(49, {1, 1, 7, 7})), pool(3, 2, 1, true, true));
    const std::vector<float> expected{
        1.7777778f, 3.6666667f, 5.0f,  4.0f,       9.6666667f, 16.0f, 18.0f,      13.0f,
        19.0f,      30.0f,      32.0f, 22.333333f, 17.333333f, 27.0f, 28.333333f, 19.555556f};
    NV_REQUIRE_CLOSE(y.data(), Tensor::from_vector(expected, {1, 1, 4, 4}), 1e-6, 0);
  }
  SECTION("1x1 input with a 2x2 window in ceil_mode is the input itself") {
    for (bool include_pad : {true, false}) {
      Variable y = ops::avg_pool2d(Variable(Tensor::from_vector({3.5f}, {1, 1, 1, 1})),
                                   pool(2, 2, 0, true, include_pad));
      REQUIRE(y.shape() == Shape{1, 1, 1, 1});
      REQUIRE(y.data().item() == 3.5f);
    }
    // A padded 3x3 window around one cell divides by 9 when the padding counts.
    Variable y = ops::avg_pool2d(Variable(Tensor::from_vector({3.5f}, {1, 1, 1, 1})),
                                 pool(3, 1, 1, false, true));
    REQUIRE(y.data().item() == Approx(3.5f / 9.0f));
  }
  SECTION("H != W: 5x8 with a padded 3x3 window, stride 2, both divisor rules") {
    Tensor x = arange(40, {1, 1, 5, 8});
    Variable inc = ops::avg_pool2d(Variable(x), pool(3, 2, 1, true, true));
    NV_REQUIRE_CLOSE(
        inc.data(),
        Tensor::from_vector({2.0f, 4.0f, 5.3333335f, 6.6666665f, 3.6666667f, 11.0f, 18.0f, 20.0f,
                             22.0f, 11.5f, 12.666667f, 20.0f, 21.333334f, 22.666666f, 11.666667f},
                            {1, 1, 3, 5}),
        1e-6, 0);
    Variable exc = ops::avg_pool2d(Variable(x), pool(3, 2, 1, true, false));
    NV_REQUIRE_CLOSE(exc.data(),
                     Tensor::from_vector({4.5f, 6.0f, 8.0f, 10.0f, 11.0f, 16.5f, 18.0f, 20.0f,
                                          22.0f, 23.0f, 28.5f, 30.0f, 32.0f, 34.0f, 35.0f},
                                         {1, 1, 3, 5}),
                     1e-6, 0);
    Variable two = ops::avg_pool2d(Variable(arange(10, {1, 1, 2, 5})), pool(2, 2, 0, true, false));
    NV_REQUIRE_CLOSE(two.data(), Tensor::from_vector({3.0f, 5.0f, 6.5f}, {1, 1, 1, 3}), 1e-6, 0);
  }
  SECTION("a ceil_mode window that would start in the right padding is dropped") {
    // 5x5, kernel 2, stride 2, padding 1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th
    // would start at 5 = H + pad - 1 + 1, inside the right padding, so PyTorch keeps 3.
    Tensor x = arange(25, {1, 1, 5, 5});
    Variable inc = ops::avg_pool2d(Variable(x), pool(2, 2, 1, true, true));
    NV_REQUIRE_CLOSE(
        inc.data(),
        Tensor::from_vector({0.0f, 0.75f, 1.75f, 3.75f, 9.0f, 11.0f, 8.75f, 19.0f, 21.0f},
                            {1, 1, 3, 3}),
        1e-6, 0);
    Variable exc = ops::avg_pool2d(Variable(x), pool(2, 2, 1, true, false));
    NV_REQUIRE_CLOSE(exc.data(),
                     Tensor::from_vector({0.0f, 1.5f, 3.5f, 7.5f, 9.0f, 11.0f, 17.5f, 19.0f, 21.0f},
                                         {1, 1, 3, 3}),
                     1e-6, 0);
  }
}

TEST_CASE("avg_pool2d: gradients match central differences", "[pooling][gradcheck]") {
  Generator g(22);
  struct Case {
    Shape shape;
    ops::AvgPool2dOptions o;
  };
  for (const Case& c : {Case{{2, 2, 7, 7}, pool(2, 2, 0, true, false)},
                        Case{{1, 2, 5, 8}, pool(3, 2, 1, true, true)},
                        Case{{1, 1, 5, 5}, pool(2, 2, 1, true, false)},
                        Case{{2, 1, 6, 4}, pool(3, 1, 1, false, false)},
                        Case{{1, 1, 1, 1}, pool(2, 2, 0, true, true)}}) {
    INFO("input " << shape_str(c.shape) << " kernel " << c.o.kernel << " stride " << c.o.stride
                  << " padding " << c.o.padding);
    test::check_gradients([&](auto& v) { return ops::avg_pool2d(v[0], c.o); },
                          {test::random_tensor(c.shape, g)}, {1e-2f, 1e-2, 1e-3, 0, {}});
  }
}

TEST_CASE("avg_pool1d: floor-mode windows along the last axis", "[pooling]") {
  // torch.nn.functional.avg_pool1d(torch.arange(10.).reshape(1, 1, 10), 4, 3) = 1.5 4.5 7.5
  Variable y = ops::avg_pool1d(Variable(arange(10, {1, 1, 10})), 4, 3);
  REQUIRE(y.data().to_vector() == std::vector<float>{1.5f, 4.5f, 7.5f});
  // E-MHSA's use: non-overlapping windows; the leftover positions are dropped.
  Variable z = ops::avg_pool1d(Variable(arange(7, {1, 1, 7})), 2, 2);
  REQUIRE(z.data().to_vector() == std::vector<float>{0.5f, 2.5f, 4.5f});

  Generator g(23);
  Tensor x = test::random_tensor({2, 3, 49}, g);
  Variable p = ops::avg_pool1d(Variable(x), 16, 16);
  REQUIRE(p.shape() == Shape{2, 3, 3});
  std::vector<float> xv = x.to_vector(), expected;
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t o = 0; o < 3; ++o) {
      double s = 0;
      for (int64_t i = 0; i < 16; ++i) s += xv[r * 49 + o * 16 + i];
      expected.push_back(static_cast<float>(s / 16));
    }
  NV_REQUIRE_CLOSE(p.data(), Tensor::from_vector(expected, {2, 3, 3}), 1e-6, 1e-6);
  test::check_gradients([](auto& v) { return ops::avg_pool1d(v[0], 4, 3); },
                        {test::random_tensor({2, 2, 11}, g)}, {1e-2f, 1e-2, 1e-3, 0, {}});
}

TEST_CASE("global_avg_pool: the mean of each plane and its gradient", "[pooling]") {
  Generator g(24);
  Tensor x = test::random_tensor({3, 4, 5, 7}, g);
  Variable y = ops::global_avg_pool(Variable(x));
  REQUIRE(y.shape() == Shape{3, 4});
  std::vector<float> xv = x.to_vector(), expected;
  for (int64_t r = 0; r < 12; ++r) {
    double s = 0;
    for (int64_t i = 0; i < 35; ++i) s += xv[r * 35 + i];
    expected.push_back(static_cast<float>(s / 35));
  }
  NV_REQUIRE_CLOSE(y.data(), Tensor::from_vector(expected, {3, 4}), 1e-6, 1e-7);
  test::check_gradients([](auto& v) { return ops::global_avg_pool(v[0]); },
                        {test::random_tensor({2, 3, 3, 5}, g)});
}

TEST_CASE("pooling: bad input gives errors that name the op and the shapes", "[pooling]") {
  Variable x3(Tensor::zeros({3, 4, 5}));
  REQUIRE_THROWS_WITH(ops::avg_pool2d(x3, pool(2, 2, 0, false, true)),
                      Catch::Contains("avg_pool2d: expected input (N, C, H, W), got (3, 4, 5)"));
  Variable one(Tensor::zeros({1, 1, 1, 1}));
  REQUIRE_THROWS_WITH(ops::avg_pool2d(one, pool(3, 1, 0, false, true)),
                      Catch::Contains("avg_pool2d: a 3x3 window with stride 1 and padding 0 does "
                                      "not fit input (1, 1, 1, 1)"));
  REQUIRE_THROWS_WITH(
      ops::avg_pool2d(Variable(Tensor::zeros({1, 1, 2, 9})), pool(3, 1, 0, true, true)),
      Catch::Contains("does not fit input (1, 1, 2, 9)"));
  REQUIRE_THROWS_WITH(
      ops::avg_pool2d(Variable(Tensor::zeros({1, 1, 8, 8})), pool(3, 1, 2, false, true)),
      Catch::Contains("avg_pool2d: padding 2 must be between 0 and half the "
                      "kernel 3"));
  REQUIRE_THROWS_WITH(
      ops::avg_pool2d(Variable(Tensor::zeros({1, 1, 8, 8})), pool(0, 1, 0, false, true)),
      Catch::Contains("avg_pool2d: kernel 0 and stride 1 must be positive"));
  REQUIRE_THROWS_WITH(ops::avg_pool1d(Variable(Tensor::zeros({2, 8, 49})), 64, 64),
                      Catch::Contains("avg_pool1d: kernel 64 is larger than the 49 positions of "
                                      "input (2, 8, 49)"));
  REQUIRE_THROWS_WITH(ops::avg_pool1d(Variable(Tensor::zeros({8, 49})), 4, 4),
                      Catch::Contains("avg_pool1d: expected input (N, C, L), got (8, 49)"));
  REQUIRE_THROWS_WITH(ops::global_avg_pool(x3),
                      Catch::Contains("global_avg_pool: expected a non-empty input (N, C, H, W), "
                                      "got (3, 4, 5)"));
}

TEST_CASE("cuda: avg_pool2d, avg_pool1d and global_avg_pool match the CPU", "[cuda][pooling]") {
  if (test::skip_without_gpu()) return;
  Tensor x = test::seeded_tensor({2, 5, 7, 9}, 19);
  ops::AvgPool2dOptions p;
  p.kernel = 2;
  p.stride = 2;
  p.ceil_mode = true;
  p.count_include_pad = false;
  test::check_backends("avg_pool2d ceil", [p](auto& v, Device) { return ops::avg_pool2d(v[0], p); },
                       {x});
  Tensor t = test::seeded_tensor({2, 24, 50}, 20);
  test::check_backends("avg_pool1d", [](auto& v, Device) { return ops::avg_pool1d(v[0], 16, 16); },
                       {t});
  test::check_backends("global_avg_pool",
                       [](auto& v, Device) { return ops::global_avg_pool(v[0]); }, {x});
}
