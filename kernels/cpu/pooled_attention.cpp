// CPU pooled attention (kernels/pooled_attention.h).
//
// Forward. Per head and block of query rows, two products around the softmax:
//   probs = q k^T (the CPU GEMM, K = d), each row scaled and softmaxed in place, out = probs v
//   (K = m). The blocks (head, up to kForwardRows rows) are spread over the OpenMP threads, each
//   running its products on its own thread. Each score and each output is summed from 0 in
//   order (channels, keys) with fused multiply-adds by the GEMM's micro-kernels, as the
//   row-by-row kernel this replaced summed them: the same bits on the x86 families
//   (tests/test_pooled_attention.cpp), except where a product takes the GEMM's dot path (K = m
//   >= 128 keys with few channels), which sums in lanes. The row kernel took 1.3-1.5x the time
//   at E-MHSA's shapes (2026-12-03, Zen 5, 2 threads: 6 heads x 784 queries x 49 keys 320 ->
//   250 us, 12 x 196 193 -> 130 us, 24 x 49 103 -> 71 us): its per-row dot products and
//   weighted sums are shorter than the micro-kernels' tiles.
//
// Backward. In two parts: dq per query row (rows spread over threads), then dk and dv per head
// (heads spread over threads; each head's sum over its query rows runs in row order, so results
// do not depend on the thread count).
//
// Vectorisation of the backward. A dot product dP_j = dout . v_j is a sum over the d channels;
// summed in that order it is one dependent chain (no compiler reorders a float sum): one
// multiply-add per 4 cycles. Instead each thread copies the head's values transposed (d rows of
// m), and a row's dP are accumulated together, a block of them in registers, channel after
// channel: the same additions in the same order for every dP_j, now as vector multiply-adds.
// The weighted sums over j (dq, dk, dv) run over a block of channels in registers; dk and dv,
// sums over the head's query rows, read the head's dS and probabilities a column at a time.
//
// AVX-512. The library is compiled for AVX2, where the compiler vectorises the loops below with
// 8-lane registers. On a CPU with AVX-512 (the GEMM's family, kernels/gemm.h: forcing AVX2
// there forces it here too) the two inner kernels run in 16-lane forms written with
// intrinsics: the same multiply-adds, fused as the compiler fuses the generic loops, in the
// same order per lane, so the results are the same bits; and their accumulators are named
// registers, where the generic loops' arrays were stored to the stack and reloaded around every
// block. The forward's scale and softmax are the same code compiled for AVX-512.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/attention_query_lanes.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/softmax_row.h"
#include "kernels/gemm.h"
#include "kernels/pooled_attention.h"
#if NEXTVIT_CPU_X86
#include <immintrin.h>
#endif

namespace nextvit::kernels::cpu {
namespace {

// Floats per block of accumulators: 32 (four AVX2 or two AVX-512 registers, enough
// independent multiply-add chains to hide their latency), or 16 where a row is that short
// (E-MHSA at head size 16, or 16 pooled tokens). The block stays in registers for the whole sum.
int64_t block_for(int64_t len) {
  return len <= 16 ? 16 : 32;
}

int64_t round_up(int64_t x, int64_t to) {
  return (x + to - 1) / to * to;
}

// A head's (m, d) keys or values as (d, mp), mp = m rounded up to a whole block with zeros,
// made once per head a thread meets.
class TransposedHead {
 public:
  TransposedHead(int64_t m, int64_t d)
      : m_(m), mp_(round_up(m, block_for(m))), d_(d), t_(static_cast<size_t>(mp_ * d), 0.0f) {}

  int64_t stride() const { return mp_; }

  // The transposed rows of head h of src (heads, m, d): t[c * mp + j] = src[h][j][c].
  const float* of(const float* src, int64_t h) {
    if (h != head_) {
      const float* s = src + h * m_ * d_;
      for (int64_t j = 0; j < m_; ++j) {
        for (int64_t c = 0; c < d_; ++c) t_[size_t(c * mp_ + j)] = s[j * d_ + c];
      }
      head_ = h;
    }
    return t_.data();
  }

 private:
  int64_t m_, mp_, d_, head_ = -1;
  std::vector<float> t_;
};

// dots[j] = a . row_j (j < m) for the rows of a matrix held transposed, (d, mp) as made by
// TransposedHead: W dot products at a time, accumulated channel after channel, each summed from
// 0 in channel order.
template <int64_t W>
void row_dots_by(const float* a, const float* transposed, int64_t mp, int64_t m, int64_t d,
                 float* dots) {
  for (int64_t j0 = 0; j0 < m; j0 += W) {
    float acc[W] = {};
    for (int64_t c = 0; c < d; ++c) {
      const float* t = transposed + c * mp + j0;
      const float ac = a[c];
#pragma omp simd
      for (int64_t l = 0; l < W; ++l) acc[l] += ac * t[l];
    }
    const int64_t w = std::min(W, m - j0);
    for (int64_t l = 0; l < w; ++l) dots[j0 + l] = acc[l];
  }
}

#if NEXTVIT_CPU_X86
// row_dots_by in 16-lane registers: W / 16 of them per row.
template <int64_t W>
__attribute__((target("avx512f"))) void row_dots_by_avx512(const float* a, const float* transposed,
                                                           int64_t mp, int64_t m, int64_t d,
                                                           float* dots) {
  constexpr int64_t V = W / 16;
  for (int64_t j0 = 0; j0 < m; j0 += W) {
    __m512 acc[V];
    for (int64_t v = 0; v < V; ++v) acc[v] = _mm512_setzero_ps();
    for (int64_t c = 0; c < d; ++c) {
      const float* t = transposed + c * mp + j0;
      const __m512 ac = _mm512_set1_ps(a[c]);
      for (int64_t v = 0; v < V; ++v)
        acc[v] = _mm512_fmadd_ps(ac, _mm512_loadu_ps(t + 16 * v), acc[v]);
    }
    const int64_t w = std::min(W, m - j0);  // keys of the block that exist (the rest is padding)
    for (int64_t v = 0; v < V; ++v) {
      const int64_t live = std::clamp<int64_t>(w - 16 * v, 0, 16);
      const __mmask16 mask = static_cast<__mmask16>((1u << live) - 1u);
      _mm512_mask_storeu_ps(dots + j0 + 16 * v, mask, acc[v]);
    }
  }
}

// The 16-lane forms run where the GEMM runs its AVX-512 family.
bool use_avx512() {
  return gemm_isa() == GemmIsa::kAvx512;
}
#endif

void row_dots(const float* a, const float* transposed, int64_t mp, int64_t m, int64_t d,
              float* dots) {
#if NEXTVIT_CPU_X86
  if (use_avx512()) {
    if (block_for(m) == 16) {
      row_dots_by_avx512<16>(a, transposed, mp, m, d, dots);
    } else {
      row_dots_by_avx512<32>(a, transposed, mp, m, d, dots);
    }
    return;
  }
#endif
  if (block_for(m) == 16) {
    row_dots_by<16>(a, transposed, mp, m, d, dots);
  } else {
    row_dots_by<32>(a, transposed, mp, m, d, dots);
  }
}

// out[c0 + l] for l < W: sum_j w[j] * rows[j * ld + c0 + l], each from 0 in j order.
template <int64_t W>
void weighted_block(const float* w, const float* rows, int64_t ld, int64_t m, int64_t c0,
                    float* out) {
  float acc[W] = {};
  for (int64_t j = 0; j < m; ++j) {
    const float* v = rows + j * ld + c0;
    const float wj = w[j];
#pragma omp simd
    for (int64_t l = 0; l < W; ++l) acc[l] += wj * v[l];
  }
  for (int64_t l = 0; l < W; ++l) out[c0 + l] = acc[l];
}

#if NEXTVIT_CPU_X86
// weighted_block in 16-lane registers.
template <int64_t W>
__attribute__((target("avx512f"))) void weighted_block_avx512(const float* w, const float* rows,
                                                              int64_t ld, int64_t m, int64_t c0,
                                                              float* out) {
  constexpr int64_t V = W / 16;
  __m512 acc[V];
  for (int64_t v = 0; v < V; ++v) acc[v] = _mm512_setzero_ps();
  for (int64_t j = 0; j < m; ++j) {
    const float* row = rows + j * ld + c0;
    const __m512 wj = _mm512_set1_ps(w[j]);
    for (int64_t v = 0; v < V; ++v)
      acc[v] = _mm512_fmadd_ps(wj, _mm512_loadu_ps(row + 16 * v), acc[v]);
  }
  for (int64_t v = 0; v < V; ++v) _mm512_storeu_ps(out + c0 + 16 * v, acc[v]);
}
#endif

template <int64_t W>
void weighted_block_best(const float* w, const float* rows, int64_t ld, int64_t m, int64_t c0,
                         float* out) {
#if NEXTVIT_CPU_X86
  if (use_avx512()) {
    weighted_block_avx512<W>(w, rows, ld, m, c0, out);
    return;
  }
#endif
  weighted_block<W>(w, rows, ld, m, c0, out);
}

// out[c] = sum_j w[j] * rows[j * ld + c] for c < d, j < m: blocks of 32 and 16 channels in
// registers, any rest channel by channel; every sum from 0 in j order.
void weighted_rows(const float* w, const float* rows, int64_t ld, int64_t m, int64_t d,
                   float* out) {
  int64_t c0 = 0;
  for (; c0 + 32 <= d; c0 += 32) weighted_block_best<32>(w, rows, ld, m, c0, out);
  for (; c0 + 16 <= d; c0 += 16) weighted_block_best<16>(w, rows, ld, m, c0, out);
  for (int64_t c = c0; c < d; ++c) {
    float acc = 0.0f;
    for (int64_t j = 0; j < m; ++j) acc += w[j] * rows[j * ld + c];
    out[c] = acc;
  }
}

// p[i * m + j] = softmax_j(scale * p[i * m + j]) for the rows i < rows.
inline void scaled_softmax_rows(float* p, int64_t rows, int64_t m, float scale) {
  for (int64_t i = 0; i < rows * m; ++i) p[i] *= scale;
  for (int64_t i = 0; i < rows; ++i) softmax_row(p + i * m, p + i * m, m);
}

#if NEXTVIT_CPU_X86
// The same compiled for AVX-512 (everything inlined, so softmax_row's loops run in 16 lanes).
__attribute__((target("avx512f"), flatten)) void scaled_softmax_avx512(float* p, int64_t rows,
                                                                       int64_t m, float scale) {
  scaled_softmax_rows(p, rows, m, scale);
}
#endif

void scaled_softmax(float* p, int64_t rows, int64_t m, float scale) {
#if NEXTVIT_CPU_X86
  if (use_avx512()) {
    scaled_softmax_avx512(p, rows, m, scale);
    return;
  }
#endif
  scaled_softmax_rows(p, rows, m, scale);
}

// Query rows per block of the forward: a block's probabilities (256 x 49 floats at E-MHSA's
// shapes, 50 KiB) stay in L2 between the softmax and the second product.
constexpr int64_t kForwardRows = 256;

}  // namespace

void pooled_attention_forward(int64_t heads, int64_t n, int64_t m, int64_t d, float scale,
                              const float* q, const float* k, const float* v, float* out,
                              float* probs) {
  const int64_t blocks = (n + kForwardRows - 1) / kForwardRows;
  parallel_for(heads * blocks, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t h = item / blocks, r0 = item % blocks * kForwardRows;
      const int64_t rows = std::min(kForwardRows, n - r0);
      const float* qb = q + (h * n + r0) * d;
      float* p = probs + (h * n + r0) * m;
      // Inside the parallel region (or on one thread) each product runs on this thread only.
      gemm(false, true, rows, m, d, 1.0f, qb, d, k + h * m * d, d, 0.0f, p, m);  // q k^T
      scaled_softmax(p, rows, m, scale);
      gemm(false, false, rows, d, m, 1.0f, p, m, v + h * m * d, d, 0.0f, out + (h * n + r0) * d, d);
    }
  });
}

// The same two products on the heads' channel-major blocks: a block of query columns of q^T
// (d, n) gives its scores as (q^T)^T k^T, and the output columns as v^T probs^T, written into
// out^T (d, n) in place. Each sum runs over the same terms in the same order as above.
// With few keys on AVX-512 or AVX2 the whole attention of 16 (8) queries at a time runs in
// registers instead (kernels/cpu/attention_query_lanes.cpp), with the same bits.
void pooled_attention_forward_channels(int64_t heads, int64_t n, int64_t m, int64_t d, float scale,
                                       const float* q, const float* k, const float* v, float* out) {
  const int64_t blocks = (n + kForwardRows - 1) / kForwardRows;
#if NEXTVIT_CPU_X86
  const bool lanes = attention_query_lanes_applies(m, d);
#else
  const bool lanes = false;
#endif
  parallel_for(heads * blocks, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> probs(lanes ? 0 : static_cast<size_t>(std::min(kForwardRows, n) * m));
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t h = item / blocks, r0 = item % blocks * kForwardRows;
      const int64_t rows = std::min(kForwardRows, n - r0);
      const float* qh = q + h * d * n;
      const float* kh = k + h * d * m;
      const float* vh = v + h * d * m;
      float* oh = out + h * d * n;
#if NEXTVIT_CPU_X86
      if (lanes) {
        attention_query_lanes(n, m, d, scale, qh, kh, vh, oh, r0, r0 + rows);
        continue;
      }
#endif
      float* p = probs.data();
      gemm(true, false, rows, m, d, 1.0f, qh + r0, n, kh, m, 0.0f, p, m);  // q k^T
      scaled_softmax(p, rows, m, scale);
      gemm(false, true, d, rows, m, 1.0f, vh, m, p, m, 0.0f, oh + r0, n);  // v^T p^T
    }
  });
}

// Derivation: docs/derivations.md#attention-backward
void pooled_attention_backward(int64_t heads, int64_t n, int64_t m, int64_t d, float scale,
                               const float* q, const float* k, const float* v, const float* probs,
                               const float* dout, float* dq, float* dk, float* dv) {
  // dS of one row: dS_j = p_j (dP_j - sum_l p_l dP_l), dP_j = dout_i . v_j, with `values`
  // holding the transposed values of the row's head.
  auto row_ds = [&](int64_t r, TransposedHead& values, float* ds) {
    const float* p = probs + r * m;
    row_dots(dout + r * d, values.of(v, r / n), values.stride(), m, d, ds);
    float t = 0.0f;
    for (int64_t j = 0; j < m; ++j) t += p[j] * ds[j];
    for (int64_t j = 0; j < m; ++j) ds[j] = p[j] * (ds[j] - t);
  };

  // dq[i] = scale * sum_j dS_ij k_j
  parallel_for(heads * n, 64, [&](int64_t r0, int64_t r1) {
    std::vector<float> ds(static_cast<size_t>(m));
    TransposedHead values(m, d);
    for (int64_t r = r0; r < r1; ++r) {
      row_ds(r, values, ds.data());
      for (float& x : ds) x *= scale;
      weighted_rows(ds.data(), k + r / n * m * d, d, m, d, dq + r * d);
    }
  });

  // dk[j] = scale * sum_i dS_ij q_i,  dv[j] = sum_i p_ij dout_i: per head (heads spread over
  // the threads), the head's scaled dS (n, m) first, then both sums over its rows i in order.
  parallel_for(heads, 1, [&](int64_t h0, int64_t h1) {
    std::vector<float> ds(static_cast<size_t>(n * m)), column(static_cast<size_t>(n));
    TransposedHead values(m, d);
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t i = 0; i < n; ++i) {
        float* row = ds.data() + i * m;
        row_ds(h * n + i, values, row);
        for (int64_t j = 0; j < m; ++j) row[j] *= scale;
      }
      const float* ph = probs + h * n * m;
      for (int64_t j = 0; j < m; ++j) {
        for (int64_t i = 0; i < n; ++i) column[size_t(i)] = ds[size_t(i * m + j)];
        weighted_rows(column.data(), q + h * n * d, d, n, d, dk + (h * m + j) * d);
        for (int64_t i = 0; i < n; ++i) column[size_t(i)] = ph[i * m + j];
        weighted_rows(column.data(), dout + h * n * d, d, n, d, dv + (h * m + j) * d);
      }
    }
  });
}

}  // namespace nextvit::kernels::cpu
