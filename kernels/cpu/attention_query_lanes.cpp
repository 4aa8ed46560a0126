// E-MHSA's pooled attention with the queries in the vector lanes
// (kernels/cpu/attention_query_lanes.h).
//
// How data moves. On the image's layout a head's queries are d channel rows of n pixels, so 16
// neighbouring pixels of one channel are one AVX-512 vector. The kernel takes 16 queries at a
// time, one per lane, through the whole attention without writing anything but the output:
//
//   scores   s_j = sum_c k[c][j] q[c]        blocks of 24 keys' scores in registers while the
//                                           d channels of q stream past: per channel one load
//                                           of q and 24 multiply-adds with broadcast keys
//   softmax  over j, each lane on its own    the m score vectors in a 4 KiB buffer (L1)
//   output   out[c] = sum_j v[c][j] p_j      blocks of 16 channels in registers while the m
//                                           probability vectors stream past
//
// The path beside it (pooled_attention_forward_channels' GEMMs) runs the two products on
// blocks of 256 queries through the GEMM, whose sums here are short (d = 32 channels, then
// m = 49 keys): the micro-kernels' loads and stores of C and the packing weigh as much as the
// multiply-adds, and the probabilities go out to a buffer and back. Measured on the 2-core Zen 4
// (2026-12-05, Next-ViT-S's four attention calls at batch 1): 562 -> 389 us on two threads,
// 1120 -> 774 us on one (0.69x; the same bits); the whole batch-1 forward 0.995-0.998x the time
// (in-process A/B, three runs of 20 rounds).
//
// Same bits. Every score and output is summed from 0 in the same order (channels, then keys)
// with the same fused multiply-adds as the GEMM's micro-kernels, and each lane's softmax repeats
// softmax_row's operations (kernels/cpu/softmax_row.h) in its order: the scaling, the maximum,
// exp_lane, the sum in 16 partial sums (key j into partial j mod 16, each in key order) added in
// partial order, one reciprocal and the products with it. tests/test_attention_on_images.cpp
// compares the two paths bit for bit.
#include "kernels/cpu/attention_query_lanes.h"

#if NEXTVIT_CPU_X86
#include <immintrin.h>

#include <algorithm>
#include <limits>

#include "kernels/cpu/exp_lanes.h"
#include "kernels/gemm.h"

namespace nextvit::kernels::cpu {
namespace {

constexpr int64_t kLanes = 16;
constexpr int64_t kMaxKeys = 64;
// Output channels come in blocks of 16 and 8.
constexpr int64_t kChannelStep = 8;

// s[j * kLanes + l] for keys j0 <= j < j0 + J: lane l's query (column l of q, rows of n
// floats) against the keys (d rows of m floats).
template <int J>
__attribute__((target("avx512f"))) void score_block(const float* q, int64_t n, __mmask16 live,
                                                    const float* k, int64_t m, int64_t d,
                                                    int64_t j0, float* s) {
  __m512 acc[J];
#pragma GCC unroll 24
  for (int j = 0; j < J; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t c = 0; c < d; ++c) {
    const __m512 qc = _mm512_maskz_loadu_ps(live, q + c * n);
    const float* kc = k + c * m + j0;
#pragma GCC unroll 24
    for (int j = 0; j < J; ++j) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(kc[j]), qc, acc[j]);
  }
#pragma GCC unroll 24
  for (int j = 0; j < J; ++j) _mm512_store_ps(s + (j0 + j) * kLanes, acc[j]);
}

// All m scores: blocks of 24 keys (24 accumulators, the q vector and a broadcast: 26 of the 32
// registers), the rest in blocks of 16, 8, 4, 2 and 1 (49 keys: 24 + 24 + 1).
__attribute__((target("avx512f"))) void scores(const float* q, int64_t n, __mmask16 live,
                                               const float* k, int64_t m, int64_t d, float* s) {
  int64_t j0 = 0;
  for (; j0 + 24 <= m; j0 += 24) score_block<24>(q, n, live, k, m, d, j0, s);
  if (j0 + 16 <= m) score_block<16>(q, n, live, k, m, d, j0, s), j0 += 16;
  if (j0 + 8 <= m) score_block<8>(q, n, live, k, m, d, j0, s), j0 += 8;
  if (j0 + 4 <= m) score_block<4>(q, n, live, k, m, d, j0, s), j0 += 4;
  if (j0 + 2 <= m) score_block<2>(q, n, live, k, m, d, j0, s), j0 += 2;
  if (j0 < m) score_block<1>(q, n, live, k, m, d, j0, s);
}

// Each lane's softmax over its m scores, scaled first: softmax_row's steps, lane by lane (see
// the top). Plain loops over the lanes, which the compiler runs as 16-lane vectors.
__attribute__((target("avx512f"), flatten)) void softmax_lanes(float* s, int64_t m, float scale) {
  alignas(64) float max[kLanes], sum[kLanes] = {}, part[kLanes];
  std::fill(max, max + kLanes, -std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < m; ++j) {
    float* x = s + j * kLanes;
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) {
      x[l] *= scale;
      max[l] = std::max(max[l], x[l]);
    }
  }
  for (int64_t j = 0; j < m; ++j) {
    float* x = s + j * kLanes;
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) x[l] = exp_lane(x[l] - max[l]);
  }
  for (int64_t g = 0; g < kLanes; ++g) {  // partial g: keys g, g + 16, ...
    std::fill(part, part + kLanes, 0.0f);
    for (int64_t j = g; j < m; j += kLanes) {
#pragma omp simd
      for (int64_t l = 0; l < kLanes; ++l) part[l] += s[j * kLanes + l];
    }
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) sum[l] += part[l];
  }
#pragma omp simd
  for (int64_t l = 0; l < kLanes; ++l) sum[l] = 1.0f / sum[l];
  for (int64_t j = 0; j < m; ++j) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) s[j * kLanes + l] *= sum[l];
  }
}

// out[c][l] for channels c0 <= c < c0 + C: sum over the m keys of v[c][j] times lane l's
// probability p[j * kLanes + l]; the live lanes stored into out (rows of n floats).
template <int C>
__attribute__((target("avx512f"))) void output_block(const float* p, int64_t m, const float* v,
                                                     int64_t c0, __mmask16 live, float* out,
                                                     int64_t n) {
  __m512 acc[C];
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t j = 0; j < m; ++j) {
    const __m512 pj = _mm512_load_ps(p + j * kLanes);
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c)
      acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(v[(c0 + c) * m + j]), pj, acc[c]);
  }
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c) _mm512_mask_storeu_ps(out + (c0 + c) * n, live, acc[c]);
}

}  // namespace

bool attention_query_lanes_applies(int64_t m, int64_t d) {
  return gemm_isa() == GemmIsa::kAvx512 && m >= 1 && m <= kMaxKeys && d >= kChannelStep &&
         d % kChannelStep == 0;
}

void attention_query_lanes(int64_t n, int64_t m, int64_t d, float scale, const float* q,
                           const float* k, const float* v, float* out, int64_t c0, int64_t c1) {
  alignas(64) float s[kMaxKeys * kLanes];
  for (int64_t col = c0; col < c1; col += kLanes) {
    const int64_t lanes = std::min(kLanes, c1 - col);
    const __mmask16 live = static_cast<__mmask16>((1u << lanes) - 1u);
    scores(q + col, n, live, k, m, d, s);
    softmax_lanes(s, m, scale);
    int64_t c = 0;
    for (; c + 16 <= d; c += 16) output_block<16>(s, m, v, c, live, out + col, n);
    for (; c < d; c += 8) output_block<8>(s, m, v, c, live, out + col, n);
  }
}

}  // namespace nextvit::kernels::cpu
#endif
