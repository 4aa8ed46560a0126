// CPU pooled attention (kernels/pooled_attention.h): row by row, the m scores of a query are
// few (49 at 224x224), so each row's scores, softmax and weighted sum of values stay in a small
// per-thread buffer. Rows of all heads are spread over the OpenMP threads. The backward splits
// in two: dq per query row (rows spread over threads), then dk and dv per head (heads spread
// over threads; each head's sum over its query rows runs in row order, so results do not depend
// on the thread count).
//
// Vectorisation. A score q . k_j is a sum over the d channels; summed in that order it is one
// dependent chain (no compiler reorders a float sum): one multiply-add per 4 cycles. Instead
// each thread copies the head's keys transposed (d rows of m), and a row's scores are
// accumulated together, a block of them in registers, channel after channel: the same
// additions in the same order for every score, now as vector multiply-adds. The gradient's
// dP_j = dout . v_j goes the same way through the values transposed. The weighted sums over j
// (out, dq, dk, dv) run over a block of channels in registers; dk and dv, sums over the head's
// query rows, read the head's dS and probabilities a column at a time. The forward takes two
// query rows of a head at once: each block's chains of multiply-adds (32 channels, or m keys,
// one after another) are one FMA latency apart, so a single row keeps the FMA units a quarter
// busy; two rows interleave two sets of chains, and every sum keeps its order (same bits).
//
// AVX-512. The library is compiled for AVX2, where the compiler vectorises the loops below with
// 8-lane registers. On a CPU with AVX-512 (the GEMM's family, kernels/gemm.h: forcing AVX2
// there forces it here too) the two inner kernels, forward and backward, run in 16-lane forms
// written with intrinsics: the same multiply-adds, fused as the compiler fuses the generic
// loops, in the same order per lane, so the results are the same bits; and their accumulators
// are named registers, where the generic loops' arrays were stored to the stack and reloaded
// around every block. The forward's scale and softmax are the same code compiled for AVX-512.
#include <algorithm>
#include <cmath>
#include <vector>

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

// dots[r * m + j] = a_r . row_j (r < R, j < m; a_r at a + r * lda) for the rows of a matrix
// held transposed, (d, mp) as made by TransposedHead: R x W dot products at a time,
// accumulated channel after channel, each summed from 0 in channel order. R > 1 runs R
// independent chains per lane (one FMA's latency apart, a single chain of 32 channels keeps
// the FMA units a quarter busy); every dot product still sees the same additions in the same
// order, so R does not change a bit.
template <int64_t R, int64_t W>
void row_dots_by(const float* a, int64_t lda, const float* transposed, int64_t mp, int64_t m,
                 int64_t d, float* dots) {
  for (int64_t j0 = 0; j0 < m; j0 += W) {
    float acc[R][W] = {};
    for (int64_t c = 0; c < d; ++c) {
      const float* t = transposed + c * mp + j0;
      for (int64_t r = 0; r < R; ++r) {
        const float ac = a[r * lda + c];
#pragma omp simd
        for (int64_t l = 0; l < W; ++l) acc[r][l] += ac * t[l];
      }
    }
    const int64_t w = std::min(W, m - j0);
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t l = 0; l < w; ++l) dots[r * m + j0 + l] = acc[r][l];
    }
  }
}

#if NEXTVIT_CPU_X86
// row_dots_by in 16-lane registers: W / 16 of them per row.
template <int64_t R, int64_t W>
__attribute__((target("avx512f"))) void row_dots_by_avx512(const float* a, int64_t lda,
                                                           const float* transposed, int64_t mp,
                                                           int64_t m, int64_t d, float* dots) {
  constexpr int64_t V = W / 16;
  for (int64_t j0 = 0; j0 < m; j0 += W) {
    __m512 acc[R][V];
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
    }
    for (int64_t c = 0; c < d; ++c) {
      const float* t = transposed + c * mp + j0;
      __m512 tv[V];
      for (int64_t v = 0; v < V; ++v) tv[v] = _mm512_loadu_ps(t + 16 * v);
      for (int64_t r = 0; r < R; ++r) {
        const __m512 ac = _mm512_set1_ps(a[r * lda + c]);
        for (int64_t v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(ac, tv[v], acc[r][v]);
      }
    }
    const int64_t w = std::min(W, m - j0);  // keys of the block that exist (the rest is padding)
    for (int64_t v = 0; v < V; ++v) {
      const int64_t live = std::clamp<int64_t>(w - 16 * v, 0, 16);
      const __mmask16 mask = static_cast<__mmask16>((1u << live) - 1u);
      for (int64_t r = 0; r < R; ++r) {
        _mm512_mask_storeu_ps(dots + r * m + j0 + 16 * v, mask, acc[r][v]);
      }
    }
  }
}
#endif

bool use_avx512() {
  return NEXTVIT_CPU_X86 && gemm_isa() == GemmIsa::kAvx512;
}

template <int64_t R>
void row_dots(const float* a, int64_t lda, const float* transposed, int64_t mp, int64_t m,
              int64_t d, float* dots) {
#if NEXTVIT_CPU_X86
  if (use_avx512()) {
    if (block_for(m) == 16) {
      row_dots_by_avx512<R, 16>(a, lda, transposed, mp, m, d, dots);
    } else {
      row_dots_by_avx512<R, 32>(a, lda, transposed, mp, m, d, dots);
    }
    return;
  }
#endif
  if (block_for(m) == 16) {
    row_dots_by<R, 16>(a, lda, transposed, mp, m, d, dots);
  } else {
    row_dots_by<R, 32>(a, lda, transposed, mp, m, d, dots);
  }
}

// out[r * ldo + c0 + l] for r < R, l < W: sum_j w[r * m + j] * rows[j * ld + c0 + l], each
// from 0 in j order (R rows of weights against the same rows: independent chains, as above).
template <int64_t R, int64_t W>
void weighted_block(const float* w, const float* rows, int64_t ld, int64_t m, int64_t c0,
                    float* out, int64_t ldo) {
  float acc[R][W] = {};
  for (int64_t j = 0; j < m; ++j) {
    const float* v = rows + j * ld + c0;
    for (int64_t r = 0; r < R; ++r) {
      const float wj = w[r * m + j];
#pragma omp simd
      for (int64_t l = 0; l < W; ++l) acc[r][l] += wj * v[l];
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t l = 0; l < W; ++l) out[r * ldo + c0 + l] = acc[r][l];
  }
}

#if NEXTVIT_CPU_X86
// weighted_block in 16-lane registers.
template <int64_t R, int64_t W>
__attribute__((target("avx512f"))) void weighted_block_avx512(const float* w, const float* rows,
                                                              int64_t ld, int64_t m, int64_t c0,
                                                              float* out, int64_t ldo) {
  constexpr int64_t V = W / 16;
  __m512 acc[R][V];
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  for (int64_t j = 0; j < m; ++j) {
    const float* row = rows + j * ld + c0;
    __m512 rv[V];
    for (int64_t v = 0; v < V; ++v) rv[v] = _mm512_loadu_ps(row + 16 * v);
    for (int64_t r = 0; r < R; ++r) {
      const __m512 wj = _mm512_set1_ps(w[r * m + j]);
      for (int64_t v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(wj, rv[v], acc[r][v]);
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t v = 0; v < V; ++v) _mm512_storeu_ps(out + r * ldo + c0 + 16 * v, acc[r][v]);
  }
}
#endif

template <int64_t R, int64_t W>
void weighted_block_best(const float* w, const float* rows, int64_t ld, int64_t m, int64_t c0,
                         float* out, int64_t ldo) {
#if NEXTVIT_CPU_X86
  if (use_avx512()) {
    weighted_block_avx512<R, W>(w, rows, ld, m, c0, out, ldo);
    return;
  }
#endif
  weighted_block<R, W>(w, rows, ld, m, c0, out, ldo);
}

// out[r * ldo + c] = sum_j w[r * m + j] * rows[j * ld + c] for r < R, c < d, j < m: blocks of
// 32 and 16 channels in registers, any rest channel by channel; every sum from 0 in j order.
template <int64_t R>
void weighted_rows(const float* w, const float* rows, int64_t ld, int64_t m, int64_t d, float* out,
                   int64_t ldo) {
  int64_t c0 = 0;
  for (; c0 + 32 <= d; c0 += 32) weighted_block_best<R, 32>(w, rows, ld, m, c0, out, ldo);
  for (; c0 + 16 <= d; c0 += 16) weighted_block_best<R, 16>(w, rows, ld, m, c0, out, ldo);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t c = c0; c < d; ++c) {
      float acc = 0.0f;
      for (int64_t j = 0; j < m; ++j) acc += w[r * m + j] * rows[j * ld + c];
      out[r * ldo + c] = acc;
    }
  }
}

// p[i * m + j] = softmax_j(scale * p[i * m + j]) for the R rows i < R.
template <int64_t R>
inline void scaled_softmax_rows(float* p, int64_t m, float scale) {
  for (int64_t i = 0; i < R * m; ++i) p[i] *= scale;
  for (int64_t i = 0; i < R; ++i) softmax_row(p + i * m, p + i * m, m);
}

#if NEXTVIT_CPU_X86
// The same compiled for AVX-512 (everything inlined, so softmax_row's loops run in 16 lanes).
template <int64_t R>
__attribute__((target("avx512f"), flatten)) void scaled_softmax_avx512(float* p, int64_t m,
                                                                       float scale) {
  scaled_softmax_rows<R>(p, m, scale);
}
#endif

template <int64_t R>
void scaled_softmax(float* p, int64_t m, float scale) {
#if NEXTVIT_CPU_X86
  if (use_avx512()) {
    scaled_softmax_avx512<R>(p, m, scale);
    return;
  }
#endif
  scaled_softmax_rows<R>(p, m, scale);
}

// The forward of R query rows [r, r + R) of one head: scores, softmax, weighted values.
template <int64_t R>
void forward_rows(int64_t r, int64_t n, int64_t m, int64_t d, float scale, const float* q,
                  TransposedHead& keys, const float* k, const float* v, float* out, float* probs) {
  const int64_t h = r / n;
  float* p = probs + r * m;  // R consecutive rows of probabilities
  row_dots<R>(q + r * d, d, keys.of(k, h), keys.stride(), m, d, p);
  scaled_softmax<R>(p, m, scale);
  weighted_rows<R>(p, v + h * m * d, d, m, d, out + r * d, d);
}

}  // namespace

void pooled_attention_forward(int64_t heads, int64_t n, int64_t m, int64_t d, float scale,
                              const float* q, const float* k, const float* v, float* out,
                              float* probs) {
  // Query rows two at a time where both belong to the same head.
  parallel_for(heads * n, 64, [&](int64_t r0, int64_t r1) {
    TransposedHead keys(m, d);
    for (int64_t r = r0; r < r1;) {
      if (r + 1 < r1 && (r + 1) / n == r / n) {
        forward_rows<2>(r, n, m, d, scale, q, keys, k, v, out, probs);
        r += 2;
      } else {
        forward_rows<1>(r, n, m, d, scale, q, keys, k, v, out, probs);
        r += 1;
      }
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
    row_dots<1>(dout + r * d, d, values.of(v, r / n), values.stride(), m, d, ds);
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
      weighted_rows<1>(ds.data(), k + r / n * m * d, d, m, d, dq + r * d, d);
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
        weighted_rows<1>(column.data(), q + h * n * d, d, n, d, dk + (h * m + j) * d, d);
        for (int64_t i = 0; i < n; ++i) column[size_t(i)] = ph[i * m + j];
        weighted_rows<1>(column.data(), dout + h * n * d, d, n, d, dv + (h * m + j) * d, d);
      }
    }
  });
}

}  // namespace nextvit::kernels::cpu
