#pragma once
// parallel_for over [0, n): splits the range into one contiguous chunk per OpenMP thread when
// n is at least `grain` (below that, threads cost more than they save) and calls f(lo, hi).
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace nextvit::kernels::cpu {

// Elements below which an elementwise loop stays on one thread (~tens of microseconds of work).
constexpr int64_t kElementwiseGrain = 1 << 15;

// The parallel_for grain for items (rows, planes, channels) of `per_item` elements each, so
// that a thread's chunk holds at least about kElementwiseGrain elements.
inline int64_t grain_for(int64_t per_item) {
  return std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, per_item));
}

template <typename F>
void parallel_for(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  if (n < grain || omp_get_max_threads() == 1 || omp_in_parallel()) {
    f(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t lo = std::min(n, t * chunk), hi = std::min(n, lo + chunk);
    if (lo < hi) f(lo, hi);
  }
}

// Sum of f(lo, hi) over a static split of [0, n) into one chunk per thread, the partial sums
// added in thread order. Unlike `omp parallel for reduction(+)`, whose partials are combined
// in whatever order threads finish, the result is the same bits on every run with the same
// number of threads.
template <typename F>
double parallel_sum(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return 0.0;
  if (n < grain || omp_get_max_threads() == 1 || omp_in_parallel()) return f(int64_t{0}, n);
  double partial[256] = {};
  int used = 1;
#pragma omp parallel
  {
    const int64_t nt = std::min(omp_get_num_threads(), 256), t = omp_get_thread_num();
    if (t < nt) {
      const int64_t chunk = (n + nt - 1) / nt;
      const int64_t lo = std::min(n, t * chunk), hi = std::min(n, lo + chunk);
      if (lo < hi) partial[t] = f(lo, hi);
    }
#pragma omp single
    used = static_cast<int>(nt);
  }
  double total = 0.0;
  for (int t = 0; t < used; ++t) total += partial[t];
  return total;
}

}  // namespace nextvit::kernels::cpu
