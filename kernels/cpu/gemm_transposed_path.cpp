// The transposed path (kernels/cpu/gemm.cpp, "Narrow C"): a C whose columns fill the blocked
// tiles' lanes poorly and whose rows fill them well is computed as C^T by the blocked path, then
// turned round into C.
#include <cmath>

#include "kernels/cpu/gemm_pack.h"
#include "kernels/cpu/gemm_paths.h"
#include "kernels/cpu/isa.h"
#if NEXTVIT_CPU_X86
#include <immintrin.h>
#endif

namespace nextvit::kernels::cpu::gemm_detail {

namespace {

// The share of the blocked tiles' lanes that n columns fill (tiles w wide).
double lane_fill(int64_t n, int w) {
  return double(n) / double(ceil_div(n, w) * w);
}

}  // namespace

// C^T = op(B)^T op(A)^T is the better product when C's columns fill the vector lanes of the
// tiles poorly and its rows fill them well: N = 196 runs 224 lanes, while M = 1152 = 36 x 32
// fills every lane and 196 = 14 x 14 every broadcast row. The product then goes into a scratch
// C^T (N x M, contiguous), which is transposed into C with alpha and beta: about 4% of the
// multiply-adds' time for these shapes, against the 12% of lanes it saves.
constexpr int64_t kTransposedMaxFloats = 4 << 20;

bool use_transposed(const Config& cfg, const Problem& p) {
  return p.M * p.N <= kTransposedMaxFloats && lane_fill(p.N, cfg.nr) < 0.9 &&
         lane_fill(p.M, cfg.nr) > lane_fill(p.N, cfg.nr) + 0.05 && lane_fill(p.N, cfg.mr) >= 0.9;
}

// C[i0:i1, j0:j1] = alpha * T^T + beta * C, T (N x M) at t with leading dimension M (C not
// read when beta == 0). On x86, 8 x 8 blocks turn round in registers; the edges go one by one,
// with the same fused multiply-add as the blocks, so an element's bits do not depend on which
// of the two it went through (nor, then, on the rectangles the threads cut C into).
void store_transposed(const Problem& p, const float* t, int64_t i0, int64_t i1, int64_t j0,
                      int64_t j1) {
  auto one = [&](int64_t i, int64_t j) {
    float* c = p.C + i * p.ldc + j;
    const float v = p.alpha * t[j * p.M + i];
    *c = p.beta == 0.0f ? v : std::fma(p.beta, *c, v);
  };
  int64_t i8 = i0, j8 = j0;  // [i0, i8) x [j0, j8) is done in 8 x 8 blocks
#if NEXTVIT_CPU_X86
  i8 = i0 + (i1 - i0) / 8 * 8;
  j8 = j0 + (j1 - j0) / 8 * 8;
  const __m256 va = _mm256_set1_ps(p.alpha), vb = _mm256_set1_ps(p.beta);
  for (int64_t i = i0; i < i8; i += 8) {
    for (int64_t j = j0; j < j8; j += 8) {
      __m256 r[8];
      for (int q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(t + (j + q) * p.M + i);
      transpose8x8(r);  // r[q] = C(i + q, j .. j + 8)
      for (int q = 0; q < 8; ++q) {
        float* c = p.C + (i + q) * p.ldc + j;
        __m256 v = _mm256_mul_ps(va, r[q]);
        if (p.beta != 0.0f) v = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), v);
        _mm256_storeu_ps(c, v);
      }
    }
  }
#endif
  for (int64_t i = i0; i < i1; ++i) {
    for (int64_t j = i < i8 ? j8 : j0; j < j1; ++j) one(i, j);
  }
}

// C^T (N x M) = op(B)^T op(A)^T by the blocked product into a scratch buffer, then turned round
// into C. With threads, each one turns round the rectangle of C^T it computed itself, straight
// after computing it: the rectangle is still in that core's L2, and one parallel region (no
// second fork and join, no reads of the other core's results) does the whole product.
void run_transposed(const Config& cfg, const Problem& p, int threads) {
  PackBuffers& buf = thread_buffers();
  float* t = PackBuffers::grow(buf.c, buf.c_size, static_cast<size_t>(p.M * p.N));
  const Problem flipped = transposed_problem(p, t);
  if (run_serial(p, threads)) {
    gemm_rect(cfg, flipped, 0, flipped.M, 0, flipped.N);
    store_transposed(p, t, 0, p.M, 0, p.N);
    p.finish_rows(0, p.M, 0, p.N);
    return;
  }
  for_each_grid_rect(cfg, flipped, threads, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    gemm_rect(cfg, flipped, m0, m1, n0, n1);
    // Rows m, columns n of C^T are columns m, rows n of C.
    if (m0 < m1 && n0 < n1) {
      store_transposed(p, t, n0, n1, m0, m1);
      p.finish_rows(n0, n1, m0, m1 - m0);
    }
  });
}

}  // namespace nextvit::kernels::cpu::gemm_detail
