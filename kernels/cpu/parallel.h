#pragma once
// parallel_for over [0, n): splits the range into one contiguous chunk per OpenMP thread when
// n is at least `grain` (below that, threads cost more than they save) and calls f(lo, hi).
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace nextvit::kernels::cpu {

// Elements below which an elementwise loop stays on one thread (~tens of microseconds of work).
constexpr int64_t kElementwiseGrain = 1 << 15;

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

}  // namespace nextvit::kernels::cpu
