// The 48-column path (kernels/cpu/gemm.cpp, "Narrow C"): products with 48 or 49 columns (a 1x1
// convolution on a 7 x 7 map, E-MHSA's 49 pooled tokens), or 96 to 256 in panels of 48, on the
// kernels of kernels/cpu/gemm_cols48.h; and x W^T with 48 or 49 rows as its transpose. AVX-512
// only.
#include "kernels/cpu/isa.h"
#if NEXTVIT_CPU_X86
#include <omp.h>

#include <algorithm>

#include "kernels/cpu/gemm_cols48.h"
#include "kernels/cpu/gemm_pack.h"
#include "kernels/cpu/gemm_paths.h"
#endif

namespace nextvit::kernels::cpu::gemm_detail {
#if NEXTVIT_CPU_X86
namespace {

// The columns of C: `panels` panels of 48 on the 48-column kernels, and `extra` more columns,
// one carried by each of the first `extra` panels (column 48 panels + q by panel q).
struct Cols48Split {
  int64_t panels, extra;
};
Cols48Split cols48_split(int64_t N) {
  return {N / 48, N % 48};
}

}  // namespace

// AVX-512 only (AVX2's 16 registers hold no 3-vector-wide tile of useful height), A read in
// place (not transposed), and K >= kDotMinK as on the dot path: the short products (the
// attention's q k^T over a head's 32 channels) stay on the blocked path, whose 49th column is
// summed along k like the others, so that the attention's token and channel forms, and its
// AVX-512 and AVX2 kernels, keep giving the same bits (tests/test_attention_on_images.cpp,
// tests/test_pooled_attention.cpp). Wider C, 96 to 256 columns, in panels of 48, each panel
// with at most one extra column (so N % 48 <= N / 48), when C has at least as many rows as
// columns: the 1x1 convolutions on 14 x 14 maps (N = 196 = 4 x 49), which the transposed path
// ran with the weights packed (transposed) and C turned round; here the weights are read in
// place, and the products took 0.86-0.97x the time, warm, on the 2-core Xeon (2 threads). A C
// with fewer rows than columns keeps the other paths, which can split it by columns.
bool use_cols48(const Problem& p) {
  if (gemm_isa() != GemmIsa::kAvx512 || p.trans_a || p.a_map.on() || p.K < kDotMinK) return false;
  const Cols48Split split = cols48_split(p.N);
  if (split.panels == 1) return split.extra <= 1;
  return p.N <= 256 && split.extra <= split.panels && p.M >= p.N;
}

namespace {

// How far ahead of its tile a kernel call prefetches the rows of A (the weights, from memory at
// batch 1): 64 KiB. Cold weights (bench_gemm --cold, 2 threads) took 0.86-0.95x the time of a
// 512 KiB lead at 14 x 14 and 0.90-0.97x at 7 x 7: the first 512 KiB of each thread's rows had
// no lead at all, and a shorter one still covers the memory's latency.
constexpr int64_t kCols48AheadBytes = 64 << 10;

// C[m0:m1, lane columns] on the calling thread, a tile of rows at a time, each tile across every
// panel while its rows of A are in L1. The tile's first kernel call also prefetches the tile
// kCols48AheadBytes of A further on: at batch 1 the weights come from memory, one row a stream
// that the hardware prefetcher joins late, and this way they are in L2 when their turn comes.
void cols48_rect(const Problem& p, const float* xp, const float* xl, int64_t m0, int64_t m1) {
  constexpr int R = micro::kCols48Rows;
  const Cols48Split split = cols48_split(p.N);
  const int64_t ahead =
      std::max<int64_t>(1, kCols48AheadBytes / (p.K * int64_t(sizeof(float))) / R) * R;
  const int64_t xp_stride = panel_stride(p.K, 48), xl_stride = panel_stride(p.K, 1);
  for (int64_t i = m0; i < m1; i += R) {
    const int rows = static_cast<int>(std::min<int64_t>(R, m1 - i));
    const int pf_rows = static_cast<int>(std::clamp<int64_t>(m1 - (i + ahead), 0, R));
    const float* pf = pf_rows > 0 ? p.A + (i + ahead) * p.lda : nullptr;  // never past A's end
    float* c = p.C + i * p.ldc;
    for (int64_t q = 0; q < split.panels; ++q) {
      // Panel q: columns [48 q, 48 q + 48), and column 48 panels + q when q < extra.
      const bool extra = q < split.extra;
      micro::kCols48Kernels[extra][rows - 1](
          p.K, p.A + i * p.lda, p.lda, xp + q * xp_stride, extra ? xl + q * xl_stride : nullptr,
          c + 48 * q, extra ? c + 48 * split.panels + q : nullptr, p.ldc, p.alpha, p.beta,
          q == 0 ? pf : nullptr, q == 0 ? pf_rows : 0);
    }
    p.finish_rows(i, i + rows, 0, p.N);  // the tile's rows of C, still in L1
  }
}

// op(B)'s 48-column panels packed (K x 48 each) and its extra columns each into a contiguous
// one, in the calling thread's buffer, by the blocked path's packers (so a map of B's rows gives
// the same bits here as there).
struct Cols48Operand {
  const float *xp, *xl;
};
Cols48Operand pack_cols48(const Problem& p) {
  const Cols48Split split = cols48_split(p.N);
  PackBuffers& buf = thread_buffers();
  const int64_t xp_floats = split.panels * panel_stride(p.K, 48);
  const int64_t xl_floats = split.extra * panel_stride(p.K, 1);
  float* xp = PackBuffers::grow(buf.b, buf.b_size, static_cast<size_t>(xp_floats + xl_floats));
  float* xl = xp + xp_floats;
  const int64_t lanes = 48 * split.panels;
  pack_block<48, false>(p.B, p.ldb, !p.trans_b, 0, lanes, 0, p.K, p.b_map, xp);
  pack_block<1, false>(p.B, p.ldb, !p.trans_b, lanes, split.extra, 0, p.K, p.b_map, xl);
  return {xp, xl};
}

// The whole product: ranges of rows of C, whole tiles each, one per thread, each thread with
// its own packed op(B) (K x 49 floats for 49 columns, read K x 48 times: on the 2-core Xeon the
// products with a few hundred rows ran in 0.65-0.94x the time of one copy packed before the
// parallel region, which the second core had to fetch from the first one's cache); each thread
// then calls rows_done(lo, hi) for its range [lo, hi) (the flipped product below turns them
// round there).
template <typename RowsDone>
void run_cols48(const Problem& p, int threads, const RowsDone& rows_done) {
  const double macs = double(p.M) * double(p.N) * double(p.K);
  if (threads <= 1 || macs < kParallelMinMacs) {
    const Cols48Operand x = pack_cols48(p);
    cols48_rect(p, x.xp, x.xl, 0, p.M);
    rows_done(0, p.M);
    return;
  }
  const int64_t tiles = ceil_div(p.M, int64_t(micro::kCols48Rows));
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t lo = std::min(p.M, tiles * t / T * micro::kCols48Rows);
    const int64_t hi = std::min(p.M, tiles * (t + 1) / T * micro::kCols48Rows);
    if (lo < hi) {
      const Cols48Operand x = pack_cols48(p);
      cols48_rect(p, x.xp, x.xl, lo, hi);
      rows_done(lo, hi);
    }
  }
}

}  // namespace

void run_cols48(const Problem& p, int threads) {
  run_cols48(p, threads, [](int64_t, int64_t) {});
}

// x W^T with 48 or 49 rows (E-MHSA's pooled keys and values, and at batch 1 every token-form
// linear of stage 4, in training): C = op(A) B^T has 49 rows and N columns, which the blocked
// tiles cover with 14-row panels (56 rows for 49) fed by transposing B as they pack it. Its
// transpose C^T = B op(A)^T is a 48-column product whose A is B itself, read in place by rows:
// the 48-column path computes it into a scratch buffer, and each thread turns its columns of C
// round straight after (store_transposed: alpha, beta, then C's pass).
bool use_cols48_transposed(const Problem& p) {
  return gemm_isa() == GemmIsa::kAvx512 && p.trans_b && !p.b_map.on() && (p.M == 48 || p.M == 49) &&
         p.K >= kDotMinK;
}

void run_cols48_transposed(const Problem& p, int threads) {
  PackBuffers& buf = thread_buffers();
  float* t = PackBuffers::grow(buf.c, buf.c_size, static_cast<size_t>(p.M * p.N));
  const Problem flipped = transposed_problem(p, t);
  run_cols48(flipped, threads, [&](int64_t j0, int64_t j1) {
    store_transposed(p, t, 0, p.M, j0, j1);
    p.finish_rows(0, p.M, j0, j1 - j0);
  });
}
#endif
}  // namespace nextvit::kernels::cpu::gemm_detail
