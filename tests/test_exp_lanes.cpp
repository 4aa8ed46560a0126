// kernels/cpu/exp_lanes.h, the vectorisable e^x of the CPU softmax: within 2 ulp of e^x (the
// double-precision exp, rounded) over the whole range a softmax meets, exact at 0, and the
// documented ends: 0 below -87, +inf above 88, NaN kept. Then a softmax row through it on rows
// of every length 1..70 (the fixed-lane max and sum, their tails) sums to one and equals a
// double reference.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/exp_lanes.h"
#include "kernels/cpu/softmax_row.h"
#include "test_util.h"

using nextvit::kernels::cpu::exp_lane;
using nextvit::kernels::cpu::softmax_row;

namespace {

// Distance in units in the last place between two finite positive floats.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(int64_t(ia) - int64_t(ib));
}

}  // namespace

TEST_CASE("exp_lane: within 2 ulp of e^x on [-87, 88], exact at 0", "[softmax][exp]") {
  int64_t worst = 0;
  float worst_x = 0.0f;
  for (float x = -87.0f; x <= 88.0f; x += 0.000731f) {
    const float want = static_cast<float>(std::exp(double(x)));
    if (want < std::numeric_limits<float>::min()) continue;  // subnormal: flushed (below)
    const int64_t d = ulps(exp_lane(x), want);
    if (d > worst) worst = d, worst_x = x;
  }
  INFO("worst " << worst << " ulp at x = " << worst_x);
  REQUIRE(worst <= 2);
  REQUIRE(exp_lane(0.0f) == 1.0f);
  REQUIRE(exp_lane(-0.0f) == 1.0f);
}

TEST_CASE("exp_lane: 0 below -87, +inf above 88, NaN kept", "[softmax][exp]") {
  const float inf = std::numeric_limits<float>::infinity();
  REQUIRE(exp_lane(-87.5f) == 0.0f);
  REQUIRE(exp_lane(-1000.0f) == 0.0f);
  REQUIRE(exp_lane(-inf) == 0.0f);
  REQUIRE(exp_lane(88.5f) == inf);
  REQUIRE(exp_lane(inf) == inf);
  REQUIRE(std::isnan(exp_lane(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("softmax_row: every length 1..70 sums to one and matches a double reference",
          "[softmax]") {
  nextvit::Generator g(5);
  for (int64_t n = 1; n <= 70; ++n) {
    std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n));
    for (float& v : x) v = 8.0f * g.normal();
    x[size_t(n / 2)] = 30.0f;  // an outlier anywhere in the row, tails included
    softmax_row(x.data(), y.data(), n);
    double max = x[0], sum = 0.0, got = 0.0;
    for (float v : x) max = std::max(max, double(v));
    for (float v : x) sum += std::exp(double(v) - max);
    for (int64_t i = 0; i < n; ++i) {
      const double want = std::exp(double(x[size_t(i)]) - max) / sum;
      // Float's x - max is rounded (half an ulp of |x - max|: that much relative error in
      // e^(x - max), as in any float softmax), then exp_lane's 2 ulp and the scaling's.
      const double tol = (4.0 + std::abs(double(x[size_t(i)]) - max)) * 0x1p-23 * want;
      INFO("n " << n << " i " << i << " x " << x[size_t(i)] << " y " << y[size_t(i)]);
      REQUIRE(std::abs(y[size_t(i)] - want) <= tol);
      got += y[size_t(i)];
    }
    REQUIRE(std::abs(got - 1.0) < 1e-5);
    softmax_row(x.data(), x.data(), n);  // in place: the same values
    REQUIRE(std::memcmp(x.data(), y.data(), size_t(n) * 4) == 0);
  }
}
