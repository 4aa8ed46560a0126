// E-MHSA's pooled attention with the queries in the vector lanes
// (kernels/cpu/attention_query_lanes.h).
//
// How data moves. On the image's layout a head's queries are d channel rows of n pixels, so 16
// neighbouring pixels of one channel are one AVX-512 vector (8 an AVX2 one). The kernel takes
// that many queries at a time, one per lane, through the whole attention without writing
// anything but the output:
//
//   scores   s_j = sum_c k[c][j] q[c]        blocks of 24 keys' scores in registers (AVX2: 12)
//                                           while the d channels of q stream past: per channel
//                                           one load of q and a multiply-add per key, the key
//                                           broadcast
//   softmax  over j, each lane on its own    the m score vectors in a buffer of at most 4 KiB
//   output   out[c] = sum_j v[c][j] p_j      blocks of 16 channels in registers (AVX2: 8) while
//                                           the m probability vectors stream past
//
// AVX-512 has 32 registers: 24 accumulators, the q vector and a broadcast; AVX2's 16 hold 12 of
// them. Both run the same order of operations, so the two families give the same bits, as the
// GEMM's do.
//
// The path beside it (pooled_attention_forward_channels' GEMMs) runs the two products on
// blocks of 256 queries through the GEMM, whose sums here are short (d = 32 channels, then
// m = 49 keys): the micro-kernels' loads and stores of C and the packing weigh as much as the
// multiply-adds, and the probabilities go out to a buffer and back. Measured on the 2-core Zen 4
// (2026-12-05, Next-ViT-S's four attention calls at batch 1, the same bits): AVX-512 562 -> 389
// us on two threads, 1120 -> 774 us on one (0.69x); AVX2 624 -> 485 and 1235 -> 958 us (0.78x).
// The whole batch-1 forward 0.994-0.998x the time on AVX-512 (in-process A/B, four runs of 20
// rounds), within the noise on AVX2 (0.997 / 1.004: the attention is 0.2 % of it there).
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

constexpr int64_t kMaxKeys = 64;
// Output channels come in blocks of a multiple of this.
constexpr int64_t kChannelStep = 8;

// Each lane's softmax over its m scores s[j * L + l], scaled first: softmax_row's steps, lane by
// lane (see the top). Plain loops over the lanes, which the compiler runs as vectors.
template <int64_t L>
inline void softmax_lanes(float* s, int64_t m, float scale) {
  alignas(64) float max[L], sum[L] = {}, part[L];
  std::fill(max, max + L, -std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < m; ++j) {
    float* x = s + j * L;
#pragma omp simd
    for (int64_t l = 0; l < L; ++l) {
      x[l] *= scale;
      max[l] = std::max(max[l], x[l]);
    }
  }
  for (int64_t j = 0; j < m; ++j) {
    float* x = s + j * L;
#pragma omp simd
    for (int64_t l = 0; l < L; ++l) x[l] = exp_lane(x[l] - max[l]);
  }
  for (int64_t g = 0; g < 16; ++g) {  // partial g: keys g, g + 16, ... (softmax_row's 16 lanes)
    std::fill(part, part + L, 0.0f);
    for (int64_t j = g; j < m; j += 16) {
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) part[l] += s[j * L + l];
    }
#pragma omp simd
    for (int64_t l = 0; l < L; ++l) sum[l] += part[l];
  }
#pragma omp simd
  for (int64_t l = 0; l < L; ++l) sum[l] = 1.0f / sum[l];
  for (int64_t j = 0; j < m; ++j) {
#pragma omp simd
    for (int64_t l = 0; l < L; ++l) s[j * L + l] *= sum[l];
  }
}

// ---- AVX-512: 16 queries a vector -----------------------------------------------------------

// s[j * 16 + l] for keys j0 <= j < j0 + J: lane l's query (column l of q, rows of n floats)
// against the keys (d rows of m floats).
template <int J>
__attribute__((target("avx512f"))) void score_block_avx512(const float* q, int64_t n,
                                                           __mmask16 live, const float* k,
                                                           int64_t m, int64_t d, int64_t j0,
                                                           float* s) {
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
  for (int j = 0; j < J; ++j) _mm512_store_ps(s + (j0 + j) * 16, acc[j]);
}

// All m scores: blocks of 24 keys, the rest in blocks of 16, 8, 4, 2 and 1 (49: 24 + 24 + 1).
__attribute__((target("avx512f"))) void scores_avx512(const float* q, int64_t n, int64_t lanes,
                                                      const float* k, int64_t m, int64_t d,
                                                      float* s) {
  const __mmask16 live = static_cast<__mmask16>((1u << lanes) - 1u);
  int64_t j0 = 0;
  for (; j0 + 24 <= m; j0 += 24) score_block_avx512<24>(q, n, live, k, m, d, j0, s);
  if (j0 + 16 <= m) score_block_avx512<16>(q, n, live, k, m, d, j0, s), j0 += 16;
  if (j0 + 8 <= m) score_block_avx512<8>(q, n, live, k, m, d, j0, s), j0 += 8;
  if (j0 + 4 <= m) score_block_avx512<4>(q, n, live, k, m, d, j0, s), j0 += 4;
  if (j0 + 2 <= m) score_block_avx512<2>(q, n, live, k, m, d, j0, s), j0 += 2;
  if (j0 < m) score_block_avx512<1>(q, n, live, k, m, d, j0, s);
}

// softmax_lanes compiled for AVX-512 (inlined: its loops run in 16 lanes).
__attribute__((target("avx512f"), flatten)) void softmax_avx512(float* s, int64_t m, float scale) {
  softmax_lanes<16>(s, m, scale);
}

// out[c][l] for channels c0 <= c < c0 + C: the sum over the m keys of v[c][j] times lane l's
// probability p[j * 16 + l]; the live lanes stored into out (rows of n floats).
template <int C>
__attribute__((target("avx512f"))) void output_block_avx512(const float* p, int64_t m,
                                                            const float* v, int64_t c0,
                                                            __mmask16 live, float* out, int64_t n) {
  __m512 acc[C];
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t j = 0; j < m; ++j) {
    const __m512 pj = _mm512_load_ps(p + j * 16);
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c)
      acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(v[(c0 + c) * m + j]), pj, acc[c]);
  }
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c) _mm512_mask_storeu_ps(out + (c0 + c) * n, live, acc[c]);
}

__attribute__((target("avx512f"))) void outputs_avx512(const float* p, int64_t m, const float* v,
                                                       int64_t d, int64_t lanes, float* out,
                                                       int64_t n) {
  const __mmask16 live = static_cast<__mmask16>((1u << lanes) - 1u);
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) output_block_avx512<16>(p, m, v, c, live, out, n);
  for (; c < d; c += 8) output_block_avx512<8>(p, m, v, c, live, out, n);
}

// ---- AVX2: 8 queries a vector (the library's baseline ISA: no target attribute) --------------

template <int J>
void score_block_avx2(const float* q, int64_t n, __m256i live, const float* k, int64_t m, int64_t d,
                      int64_t j0, float* s) {
  __m256 acc[J];
#pragma GCC unroll 12
  for (int j = 0; j < J; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t c = 0; c < d; ++c) {
    const __m256 qc = _mm256_maskload_ps(q + c * n, live);
    const float* kc = k + c * m + j0;
#pragma GCC unroll 12
    for (int j = 0; j < J; ++j) acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(kc + j), qc, acc[j]);
  }
#pragma GCC unroll 12
  for (int j = 0; j < J; ++j) _mm256_store_ps(s + (j0 + j) * 8, acc[j]);
}

// The lanes below `lanes` set (all bits of a lane: what maskload and maskstore test).
__m256i live_avx2(int64_t lanes) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lanes)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

void scores_avx2(const float* q, int64_t n, int64_t lanes, const float* k, int64_t m, int64_t d,
                 float* s) {
  const __m256i live = live_avx2(lanes);
  int64_t j0 = 0;
  for (; j0 + 12 <= m; j0 += 12) score_block_avx2<12>(q, n, live, k, m, d, j0, s);
  if (j0 + 8 <= m) score_block_avx2<8>(q, n, live, k, m, d, j0, s), j0 += 8;
  if (j0 + 4 <= m) score_block_avx2<4>(q, n, live, k, m, d, j0, s), j0 += 4;
  if (j0 + 2 <= m) score_block_avx2<2>(q, n, live, k, m, d, j0, s), j0 += 2;
  if (j0 < m) score_block_avx2<1>(q, n, live, k, m, d, j0, s);
}

void softmax_avx2(float* s, int64_t m, float scale) {
  softmax_lanes<8>(s, m, scale);
}

void outputs_avx2(const float* p, int64_t m, const float* v, int64_t d, int64_t lanes, float* out,
                  int64_t n) {
  const __m256i live = live_avx2(lanes);
  for (int64_t c0 = 0; c0 < d; c0 += 8) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t j = 0; j < m; ++j) {
      const __m256 pj = _mm256_load_ps(p + j * 8);
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c)
        acc[c] = _mm256_fmadd_ps(_mm256_broadcast_ss(v + (c0 + c) * m + j), pj, acc[c]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) _mm256_maskstore_ps(out + (c0 + c) * n, live, acc[c]);
  }
}

// ---- the family of the GEMM's ISA ---------------------------------------------------------

struct LaneKernels {
  int64_t lanes;
  void (*scores)(const float* q, int64_t n, int64_t lanes, const float* k, int64_t m, int64_t d,
                 float* s);
  void (*softmax)(float* s, int64_t m, float scale);
  void (*outputs)(const float* p, int64_t m, const float* v, int64_t d, int64_t lanes, float* out,
                  int64_t n);
};

const LaneKernels* lane_kernels() {
  static constexpr LaneKernels avx512{16, scores_avx512, softmax_avx512, outputs_avx512};
  static constexpr LaneKernels avx2{8, scores_avx2, softmax_avx2, outputs_avx2};
  return x86_form(avx512, avx2);
}

}  // namespace

bool attention_query_lanes_applies(int64_t m, int64_t d) {
  return lane_kernels() != nullptr && m >= 1 && m <= kMaxKeys && d >= kChannelStep &&
         d % kChannelStep == 0;
}

void attention_query_lanes(int64_t n, int64_t m, int64_t d, float scale, const float* q,
                           const float* k, const float* v, float* out, int64_t c0, int64_t c1) {
  const LaneKernels& f = *lane_kernels();
  alignas(64) float s[kMaxKeys * 16];
  for (int64_t col = c0; col < c1; col += f.lanes) {
    const int64_t lanes = std::min(f.lanes, c1 - col);
    f.scores(q + col, n, lanes, k, m, d, s);
    f.softmax(s, m, scale);
    f.outputs(s, m, v, d, lanes, out + col, n);
  }
}

}  // namespace nextvit::kernels::cpu
#endif
