#pragma once
// Two sums over many short runs (a channel's N runs of S values in NCHW), kept per lane: lane l
// holds the terms at positions i = l mod kLanes of every run, and the lanes are added together
// once, at the end. With the small maps of a 28x28 model (S = 49 or 16 at the later stages) a
// vector reduction per run (horizontal adds, a scalar tail) costs more than the run itself;
// per-lane partials keep every run's loop a few independent vector adds. The order of the
// additions depends on S and N only, so the result is the same bits on every run.
#include <cstdint>

namespace nextvit::kernels::cpu {

struct LaneSums2 {
  static constexpr int64_t kLanes = 16;
  double a[kLanes] = {}, b[kLanes] = {};

  // Adds the terms f(i, u, v) (f sets u and v) for i in [0, len).
  template <typename F>
  void add_run(int64_t len, const F& f) {
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes) {
#pragma omp simd
      for (int64_t l = 0; l < kLanes; ++l) {
        double u, v;
        f(i + l, u, v);
        a[l] += u;
        b[l] += v;
      }
    }
    for (int64_t l = 0; i + l < len; ++l) {
      double u, v;
      f(i + l, u, v);
      a[l] += u;
      b[l] += v;
    }
  }

  double sum_a() const {
    return total(a);
  }
  double sum_b() const {
    return total(b);
  }

 private:
  static double total(const double (&lanes)[kLanes]) {
    double t = 0.0;
    for (int64_t l = 0; l < kLanes; ++l) t += lanes[l];
    return t;
  }
};

}  // namespace nextvit::kernels::cpu
