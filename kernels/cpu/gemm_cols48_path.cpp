// The 48-column path (kernels/cpu/gemm.cpp, "Narrow C"): products with 48 or 49 columns (a 1x1
// convolution on a 7 x 7 map, E-MHSA's 49 pooled tokens), or 96 to 256 in panels, and x W^T with
// 48 or 49 rows as its transpose. Two forms of its kernels: AVX-512's panels of 48 columns
// (kernels/cpu/gemm_cols48.h) and AVX2's panels of 16 (kernels/cpu/gemm_cols16.h), each panel
// with at most one extra column; the loops here are the same for both.
#include "kernels/cpu/isa.h"
#if NEXTVIT_CPU_X86
#include <omp.h>

#include <algorithm>

#include "kernels/cpu/gemm_cols16.h"
#include "kernels/cpu/gemm_cols48.h"
#include "kernels/cpu/gemm_pack.h"
#include "kernels/cpu/gemm_paths.h"
#include "kernels/cpu/stealing_ranges.h"
#endif

namespace nextvit::kernels::cpu::gemm_detail {
#if NEXTVIT_CPU_X86
namespace {

// The kernels of the family in use: the columns of a panel, the table [extra][rows - 1], and the
// fewest rows of C worth them. A C of one row (a weight gradient's bias-like row in training, K
// in the thousands) ran 1.2-1.5x slower on the AVX2 form than on the other paths (2 x 16 FMAs a
// step on three loads), and 0.66x the time on the AVX-512 one (Zen 4, 2 threads).
struct ColsForm {
  int width;
  const std::array<std::array<micro::Cols48Kernel, micro::kCols48Rows>, 2>* kernels;
  int64_t min_rows;
};
const ColsForm* cols_form() {
  static const ColsForm avx512{48, &micro::kCols48Kernels, 1},
      avx2{16, &micro::kCols16Kernels, micro::kCols48Rows};
  return x86_form(avx512, avx2);
}

// The columns of C: `panels` panels of the form's width in the lanes, and `extra` more columns,
// one carried by each of the first `extra` panels (column width * panels + q by panel q).
struct Cols48Split {
  int64_t panels, extra;
};
Cols48Split cols48_split(const ColsForm& f, int64_t N) {
  return {N / f.width, N % f.width};
}

}  // namespace

// A read in place (not transposed), and K >= kDotMinK as on the dot path: the short products
// (the attention's q k^T over a head's 32 channels) stay on the blocked path, whose 49th column is
// summed along k like the others, so that the attention's token and channel forms, and its
// AVX-512 and AVX2 kernels, keep giving the same bits (tests/test_attention_on_images.cpp,
// tests/test_pooled_attention.cpp). 48 or 49 columns; or 96 to 256, each panel with at most one
// extra column, when C has at least as many rows as columns: the 1x1 convolutions on 14 x 14 maps
// (N = 196), which the transposed path ran with the weights packed (transposed) and C turned
// round; here the weights are read in place, and the products took 0.86-0.97x the time, warm, on
// the 2-core Xeon (AVX-512, 2 threads). On AVX2 (Zen 4, bench_gemm, 1 thread) the other paths
// ran the 14 x 14 and 7 x 7 products at 83-88 % of the FMA peak (the blocked path's 6 x 16 tiles
// spend a thirteenth tile on 196's last 4 columns; 49 columns went to the transposed path) and
// x W^T on 49 rows at 78-79 %; the 16-column panels run them at 94-96 % and 91-94 %. A C with
// fewer rows than columns keeps the other paths, which can split it by columns.
bool use_cols48(const Problem& p) {
  const ColsForm* f = cols_form();
  if (f == nullptr || p.trans_a || p.a_map.on() || p.K < kDotMinK) return false;
  if (p.M < f->min_rows) return false;
  if (p.N == 48 || p.N == 49) return true;
  const Cols48Split split = cols48_split(*f, p.N);
  return p.N >= 96 && p.N <= 256 && split.extra <= split.panels && p.M >= p.N;
}

namespace {

// How far ahead of its tile a kernel call prefetches the rows of A (the weights, from memory at
// batch 1): 64 KiB. Cold weights (bench_gemm --cold, 2 threads) took 0.86-0.95x the time of a
// 512 KiB lead at 14 x 14 and 0.90-0.97x at 7 x 7: the first 512 KiB of each thread's rows had
// no lead at all, and a shorter one still covers the memory's latency.
constexpr int64_t kCols48AheadBytes = 64 << 10;

// C[m0:m1, lane columns] on the calling thread, a tile of rows at a time, each tile across every
// panel while its rows of A are in L1. The tile's first kernel call also prefetches the tile
// kCols48AheadBytes of A further on (up to row pf_end): at batch 1 the weights come from memory,
// one row a stream that the hardware prefetcher joins late, and this way they are in L2 when
// their turn comes.
void cols48_rect(const ColsForm& f, const Problem& p, const float* xp, const float* xl, int64_t m0,
                 int64_t m1, int64_t pf_end) {
  constexpr int R = micro::kCols48Rows;
  const Cols48Split split = cols48_split(f, p.N);
  const int64_t ahead =
      std::max<int64_t>(1, kCols48AheadBytes / (p.K * int64_t(sizeof(float))) / R) * R;
  const int64_t xp_stride = panel_stride(p.K, f.width), xl_stride = panel_stride(p.K, 1);
  for (int64_t i = m0; i < m1; i += R) {
    const int rows = static_cast<int>(std::min<int64_t>(R, m1 - i));
    const int pf_rows = static_cast<int>(std::clamp<int64_t>(pf_end - (i + ahead), 0, R));
    const float* pf = pf_rows > 0 ? p.A + (i + ahead) * p.lda : nullptr;  // never past A's end
    float* c = p.C + i * p.ldc;
    for (int64_t q = 0; q < split.panels; ++q) {
      // Panel q: columns [w q, w q + w), and column w panels + q when q < extra.
      const bool extra = q < split.extra;
      (*f.kernels)[extra][rows - 1](p.K, p.A + i * p.lda, p.lda, xp + q * xp_stride,
                                    extra ? xl + q * xl_stride : nullptr, c + f.width * q,
                                    extra ? c + f.width * split.panels + q : nullptr, p.ldc,
                                    p.alpha, p.beta, q == 0 ? pf : nullptr, q == 0 ? pf_rows : 0);
    }
    p.finish_rows(i, i + rows, 0, p.N);  // the tile's rows of C, still in L1
  }
}

// op(B)'s panels packed (K x width each) and its extra columns each into a contiguous one, in
// the calling thread's buffer, by the blocked path's packers (so a map of B's rows gives the same
// bits here as there).
struct Cols48Operand {
  const float *xp, *xl;
};
Cols48Operand pack_cols48(const ColsForm& f, const Problem& p) {
  const Cols48Split split = cols48_split(f, p.N);
  PackBuffers& buf = thread_buffers();
  const int64_t xp_floats = split.panels * panel_stride(p.K, f.width);
  const int64_t xl_floats = split.extra * panel_stride(p.K, 1);
  float* xp = PackBuffers::grow(buf.b, buf.b_size, static_cast<size_t>(xp_floats + xl_floats));
  float* xl = xp + xp_floats;
  const int64_t lanes = f.width * split.panels;
  if (f.width == 48) {
    pack_block<48, false>(p.B, p.ldb, !p.trans_b, 0, lanes, 0, p.K, p.b_map, xp);
  } else {
    pack_block<16, false>(p.B, p.ldb, !p.trans_b, 0, lanes, 0, p.K, p.b_map, xp);
  }
  pack_block<1, false>(p.B, p.ldb, !p.trans_b, lanes, split.extra, 0, p.K, p.b_map, xl);
  return {xp, xl};
}

// Rows of C a thread claims at a time once its own range is done (stealing_ranges.h): about
// this many multiply-adds (about 18 microseconds on a Zen 4 core), so that the threads of a
// region finish within about that of each other. Measured (Next-ViT-S batch 1, 2 threads, Zen
// 4): the threads of the regions here finished 6 % of the regions' time apart with a static
// split, 1-2 % with this, and the forward took 0.984-0.991x the time (in-process A/B, three runs
// of 20 rounds, faster in 11-14 of them).
constexpr int64_t kStealMacs = int64_t{1} << 20;

// The whole product: a range of rows of C per thread, whole tiles each, then the rest of another
// thread's range from its back (stealing_ranges.h), each thread with its own packed op(B) (K x
// 49 floats for 49 columns, read K x 48 times: on the 2-core Xeon the products with a few
// hundred rows ran in 0.65-0.94x the time of one copy packed before the parallel region, which
// the second core had to fetch from the first one's cache); each thread then calls rows_done(lo,
// hi) for each range [lo, hi) it computed (the flipped product below turns them round there).
template <typename RowsDone>
void run_cols48(const Problem& p, int threads, const RowsDone& rows_done) {
  constexpr int64_t R = micro::kCols48Rows;
  const ColsForm& f = *cols_form();
  const double macs = double(p.M) * double(p.N) * double(p.K);
  if (threads <= 1 || macs < kParallelMinMacs) {
    const Cols48Operand x = pack_cols48(f, p);
    cols48_rect(f, p, x.xp, x.xl, 0, p.M, p.M);
    rows_done(0, p.M);
    return;
  }
  const int64_t tiles = ceil_div(p.M, R);
  StealingRanges ranges(tiles, threads, std::max<int64_t>(1, kStealMacs / (R * p.N * p.K)));
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const Cols48Operand x = pack_cols48(f, p);
    int64_t a = 0, b = 0;
    while (ranges.next(t, a, b)) {
      // Prefetching runs ahead to the end of the range the tiles were dealt to.
      const int64_t lo = a * R, hi = std::min(p.M, b * R);
      cols48_rect(f, p, x.xp, x.xl, lo, hi, std::min(p.M, ranges.range_end(a) * R));
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
  const ColsForm* f = cols_form();
  return f != nullptr && p.N >= f->min_rows && p.trans_b && !p.b_map.on() &&
         (p.M == 48 || p.M == 49) && p.K >= kDotMinK;
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
