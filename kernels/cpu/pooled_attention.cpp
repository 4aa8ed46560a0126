// CPU pooled attention (kernels/pooled_attention.h): row by row, the m scores of a query are
// few (49 at 224x224), so each row's scores, softmax and weighted sum of values stay in a small
// per-thread buffer. Rows of all heads are spread over the OpenMP threads. The backward splits
// in two: dq per query row (rows spread over threads), then dk and dv per head (heads spread
// over threads; each head's sum over its query rows runs in row order, so results do not depend
// on the thread count).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/softmax_row.h"
#include "kernels/pooled_attention.h"

namespace nextvit::kernels::cpu {

void pooled_attention_forward(int64_t heads, int64_t n, int64_t m, int64_t d, float scale,
                              const float* q, const float* k, const float* v, float* out,
                              float* probs) {
  parallel_for(heads * n, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t h = r / n;
      const float* qr = q + r * d;
      const float* kh = k + h * m * d;
      const float* vh = v + h * m * d;
      float* p = probs + r * m;
      for (int64_t j = 0; j < m; ++j) {
        float s = 0.0f;
        for (int64_t c = 0; c < d; ++c) s += qr[c] * kh[j * d + c];
        p[j] = s * scale;
      }
      softmax_row(p, p, m);
      float* o = out + r * d;
      for (int64_t c = 0; c < d; ++c) o[c] = 0.0f;
      for (int64_t j = 0; j < m; ++j) {
        for (int64_t c = 0; c < d; ++c) o[c] += p[j] * vh[j * d + c];
      }
    }
  });
}

// Derivation: docs/derivations.md#attention-backward
void pooled_attention_backward(int64_t heads, int64_t n, int64_t m, int64_t d, float scale,
                               const float* q, const float* k, const float* v, const float* probs,
                               const float* dout, float* dq, float* dk, float* dv) {
  // dS of one row: dS_j = p_j (dP_j - sum_l p_l dP_l), dP_j = dout_i . v_j.
  auto row_ds = [&](int64_t r, float* ds) {
    const int64_t h = r / n;
    const float* g = dout + r * d;
    const float* vh = v + h * m * d;
    const float* p = probs + r * m;
    float t = 0.0f;
    for (int64_t j = 0; j < m; ++j) {
      float dp = 0.0f;
      for (int64_t c = 0; c < d; ++c) dp += g[c] * vh[j * d + c];
      ds[j] = dp;
      t += p[j] * dp;
    }
    for (int64_t j = 0; j < m; ++j) ds[j] = p[j] * (ds[j] - t);
  };

  // dq[i] = scale * sum_j dS_ij k_j
  parallel_for(heads * n, 64, [&](int64_t r0, int64_t r1) {
    std::vector<float> ds(static_cast<size_t>(m));
    for (int64_t r = r0; r < r1; ++r) {
      row_ds(r, ds.data());
      const float* kh = k + r / n * m * d;
      float* o = dq + r * d;
      for (int64_t c = 0; c < d; ++c) o[c] = 0.0f;
      for (int64_t j = 0; j < m; ++j) {
        const float w = ds[size_t(j)] * scale;
        for (int64_t c = 0; c < d; ++c) o[c] += w * kh[j * d + c];
      }
    }
  });

  // dk[j] = scale * sum_i dS_ij q_i,  dv[j] = sum_i p_ij dout_i: per head, rows in order.
  parallel_for(heads, 1, [&](int64_t h0, int64_t h1) {
    std::vector<float> ds(static_cast<size_t>(m));
    for (int64_t h = h0; h < h1; ++h) {
      float* dkh = dk + h * m * d;
      float* dvh = dv + h * m * d;
      for (int64_t e = 0; e < m * d; ++e) dkh[e] = dvh[e] = 0.0f;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t r = h * n + i;
        row_ds(r, ds.data());
        const float* qr = q + r * d;
        const float* g = dout + r * d;
        const float* p = probs + r * m;
        for (int64_t j = 0; j < m; ++j) {
          const float wk = ds[size_t(j)] * scale, wv = p[j];
          for (int64_t c = 0; c < d; ++c) {
            dkh[j * d + c] += wk * qr[c];
            dvh[j * d + c] += wv * g[c];
          }
        }
      }
    }
  });
}

}  // namespace nextvit::kernels::cpu
