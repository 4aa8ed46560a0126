#pragma once
// One softmax row, shared by the softmax op and the CPU pooled attention: three passes (max,
// exponentials and their sum, scaling) while the row is still in cache. y may be x.
//
// Every pass is a vector loop. The exponentials are exp_lane's (kernels/cpu/exp_lanes.h). The
// max and the sum are kept in kLanes partial results, lane l taking the elements i = l mod
// kLanes, combined in lane order at the end: a fixed order that depends on n only (not on the
// vector width the CPU has), so a row gives the same bits on every machine of one build. The
// max is exact in any order; the sum of terms in (0, 1] needs no double (it is at least 1, the
// maximum's own term).
#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/cpu/exp_lanes.h"

namespace nextvit::kernels::cpu {

inline void softmax_row(const float* x, float* y, int64_t n) {
  constexpr int64_t kLanes = 16;
  float lane_max[kLanes], lane_sum[kLanes] = {};
  std::fill(lane_max, lane_max + kLanes, -std::numeric_limits<float>::infinity());
  const int64_t whole = n / kLanes * kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) lane_max[l] = std::max(lane_max[l], x[i + l]);
  }
  for (int64_t i = whole; i < n; ++i) lane_max[i - whole] = std::max(lane_max[i - whole], x[i]);
  float max = lane_max[0];
  for (int64_t l = 1; l < kLanes; ++l) max = std::max(max, lane_max[l]);

#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = exp_lane(x[i] - max);
  for (int64_t i = 0; i < whole; i += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) lane_sum[l] += y[i + l];
  }
  for (int64_t i = whole; i < n; ++i) lane_sum[i - whole] += y[i];
  float sum = 0.0f;
  for (int64_t l = 0; l < kLanes; ++l) sum += lane_sum[l];

  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

}  // namespace nextvit::kernels::cpu
