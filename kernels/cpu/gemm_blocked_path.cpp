// The blocked path (kernels/cpu/gemm.cpp, "How data moves"): the GotoBLAS / BLIS loops around
// the micro-kernels (kernels/cpu/gemm_micro_kernel.h), the block sizes of each family, and the
// split of C among threads.
#include <algorithm>
#include <array>

#include "kernels/cpu/gemm_pack.h"
#include "kernels/cpu/gemm_paths.h"
#include "kernels/cpu/gemm_portable.h"
#include "kernels/cpu/isa.h"
#if NEXTVIT_CPU_X86
#include "kernels/cpu/gemm_avx2.h"
#include "kernels/cpu/gemm_avx512.h"
#endif

namespace nextvit::kernels::cpu::gemm_detail {
namespace {

using micro::MicroKernel;
#if NEXTVIT_CPU_X86
using micro::kKernels256;
using micro::kKernels512;
using micro::kMr256;
using micro::kMr512;
using micro::kNr256;
using micro::kNr512;
#endif
using micro::kKernelsPortable;
using micro::kMrPortable;
using micro::kNrPortable;

template <int MR, int NR, size_t R>
constexpr Config make_config(int64_t kc, int64_t mc, int64_t nc,
                             const std::array<std::array<MicroKernel, R>, 2>& kernels) {
  return {MR, NR, kc, mc, nc, pack_a<MR>, pack_b<NR>, {kernels[0].data(), kernels[1].data()}};
}

// AVX-512: A panels 192 x 14 floats (10.5 KiB), B blocks 192 x 384 (288 KiB), A blocks 448 x 192
// (336 KiB). AVX2: A panels 384 x 6 (9 KiB), B blocks 384 x 512 (768 KiB), A blocks 384 x 384
// (576 KiB). Measured on Next-ViT's shapes (bench_gemm, Sapphire Rapids, 1 thread): against
// kc = 384, mc = 336, nc = 512 for AVX-512 these lift the products with K = 288-1152 by 1.5-3
// points of peak (K = 384 and 1152 in blocks of 192: shorter A panels leave L1 room for the B
// panel streaming past) and move the others by less than a point. (kc = 256 and 320 measured
// the same, +1 on the linear layers, on Sapphire Rapids; their rounding took the 2-rank vs 1-rank
// training check of tests/mpi to 1.9e-5, then past its bound of 1e-5, which is now a share of
// how far training moves the weights: docs/distributed.md, "Equivalence".) AVX2's
// 6 x 16 tile reads half as many bytes of B per k and gains 1-6 points from kc = 384,
// mc = 384 instead of 256 and 192.
// Portable: 256 x 8 panels of A (8 KiB), B blocks 256 x 480 (480 KiB).
#if NEXTVIT_CPU_X86
constexpr Config kConfigAvx512 = make_config<kMr512, kNr512>(192, 14 * 32, 32 * 12, kKernels512);
constexpr Config kConfigAvx2 = make_config<kMr256, kNr256>(384, 6 * 64, 16 * 32, kKernels256);
#endif
constexpr Config kConfigPortable =
    make_config<kMrPortable, kNrPortable>(256, 8 * 32, 12 * 40, kKernelsPortable);

// op(B) is read in place instead of packed when it is not transposed, each of its elements is
// used by at most kDirectBMaxPanels panels of A (packing would then cost a large part of the
// multiply-adds it serves: a packed float costs about what 10-20 of them do), and the kc rows
// of a block span at most kDirectBMaxSpan bytes. Beyond that span the rows are likely in memory
// and on hundreds of pages, which the packer's row-by-row walk fetches much faster than the
// micro-kernel's hops between rows.
constexpr int64_t kDirectBMaxPanels = 4;
constexpr int64_t kDirectBMaxSpan = 4 << 20;

// Below this many steps of k a product's blocks of B are narrowed (gemm_rect).
constexpr int64_t kShortK = 64;

// The row tiles of a block of mb rows of C: whole MR-row panels, except that a remainder of at
// most kMaxShortTile rows is merged with the panel before it and the two split evenly (14 + 2
// becomes 8 + 8, 6 + 1 becomes 4 + 3). A tile of 2 rows holds 2 x 2 accumulators, too few to
// hide the FMA latency: in a 16-row product (MHCA's 16 channels per group) it took a quarter
// of the micro-kernel time for an eighth of the rows. Tile r starts at row start(r), has rows(r)
// rows and is packed as panel r.
struct RowTiles {
  static constexpr int64_t kMaxShortTile = 3;
  RowTiles(int64_t mb, int mr) : mr(mr), panels(ceil_div(mb, mr)), mb(mb) {
    const int64_t rest = mb % mr;
    if (panels >= 2 && rest > 0 && rest <= kMaxShortTile) {
      split = (panels - 2) * mr;
      first_half = (mb - split + 1) / 2;
    }
  }
  int64_t start(int64_t r) const {
    if (r < panels - 2 || first_half == 0) return r * mr;
    return r == panels - 2 ? split : split + first_half;
  }
  int64_t rows(int64_t r) const { return (r + 1 < panels ? start(r + 1) : mb) - start(r); }
  int mr;
  int64_t panels, mb, split = 0, first_half = 0;  // first_half 0: no split
};

}  // namespace

// C[m0:m1, n0:n1] of the product, on the calling thread.
void gemm_rect(const Config& cfg, const Problem& p, int64_t m0, int64_t m1, int64_t n0,
               int64_t n1) {
  if (m0 >= m1 || n0 >= n1) return;
  // Split K into equal blocks no larger than kc (K = 400 becomes 200 + 200, not 384 + 16).
  const int64_t kblocks = ceil_div(p.K, cfg.kc);
  const int64_t kcb = ceil_div(p.K, kblocks);
  const int64_t mcb = std::min(cfg.mc, ceil_div(m1 - m0, cfg.mr) * cfg.mr);
  // With few steps of k, a quarter of the columns per block: the B block and the C tiles a row
  // of tiles writes then fit in L1 together (the stem's im2col chunk, K = 27, on the 2-core
  // Xeon: 0.97-0.98x the time on one thread, 0.94x on two; forced AVX2 0.98-0.99x).
  const int64_t nc = kcb < kShortK ? cfg.nc / 4 : cfg.nc;
  const int64_t ncb = std::min(nc, ceil_div(n1 - n0, cfg.nr) * cfg.nr);
  const bool direct_b = !p.trans_b && !p.b_map.on() && !p.blocked_layout() &&
                        ceil_div(m1 - m0, cfg.mr) <= kDirectBMaxPanels &&
                        kcb * p.ldb * int64_t(sizeof(float)) <= kDirectBMaxSpan;
  PackBuffers& buf = thread_buffers();
  float* abuf = PackBuffers::grow(buf.a, buf.a_size,
                                  static_cast<size_t>(mcb / cfg.mr * panel_stride(kcb, cfg.mr)));
  float* bbuf =
      direct_b ? nullptr
               : PackBuffers::grow(buf.b, buf.b_size,
                                   static_cast<size_t>(ncb / cfg.nr * panel_stride(kcb, cfg.nr)));
  const MicroKernel* kernels = cfg.kernels[direct_b ? 1 : 0];

  for (int64_t jc = m0; jc < m1; jc += mcb) {
    const int64_t mb = std::min(mcb, m1 - jc);
    const RowTiles tiles(mb, cfg.mr);
    for (int64_t pc = 0; pc < p.K; pc += kcb) {
      const int64_t kb = std::min(kcb, p.K - pc);
      const float beta = pc == 0 ? p.beta : 1.0f;
      const int64_t a_ps = panel_stride(kb, cfg.mr);
      if (tiles.first_half == 0) {
        cfg.pack_a(p, jc, mb, pc, kb, abuf);
      } else {  // the whole panels in one pass (one walk over k), then the split pair
        if (tiles.split > 0) cfg.pack_a(p, jc, tiles.split, pc, kb, abuf);
        for (int64_t r = tiles.panels - 2; r < tiles.panels; ++r) {
          cfg.pack_a(p, jc + tiles.start(r), tiles.rows(r), pc, kb, abuf + r * a_ps);
        }
      }
      for (int64_t ic = n0; ic < n1; ic += ncb) {
        const int64_t nb = std::min(ncb, n1 - ic);
        // Where the B panel of columns ic + jr starts and how far apart its k rows are.
        const float* bblock;
        int64_t b_ps, b_ld;
        if (direct_b) {
          bblock = p.B + pc * p.ldb + ic;
          b_ps = cfg.nr;
          b_ld = p.ldb;
        } else {
          cfg.pack_b(p, pc, kb, ic, nb, bbuf);
          bblock = bbuf;
          b_ps = panel_stride(kb, cfg.nr);
          b_ld = cfg.nr;
        }
        for (int64_t r = 0; r < tiles.panels; ++r) {
          const int64_t ir = tiles.start(r);
          const int m = static_cast<int>(tiles.rows(r));
          const MicroKernel kernel = kernels[m - 1];
          const float* apanel = abuf + r * a_ps;
          float* crow = p.C + (jc + ir) * p.ldc + ic;
          for (int64_t jr = 0; jr < nb; jr += cfg.nr) {
            const int n = static_cast<int>(std::min<int64_t>(cfg.nr, nb - jr));
            kernel(kb, apanel, bblock + jr / cfg.nr * b_ps, b_ld, crow + jr, p.ldc, n, p.alpha,
                   beta);
          }
          // The panel's rows of this block are done after their last K block: finished now,
          // while they are in L1.
          if (pc + kb == p.K) p.finish_rows(jc + ir, jc + ir + m, ic, nb);
        }
      }
    }
  }
}

const Config& config() {
  switch (gemm_isa()) {
#if NEXTVIT_CPU_X86
    case GemmIsa::kAvx512:
      return kConfigAvx512;
    case GemmIsa::kAvx2:
      return kConfigAvx2;
#endif
    default:
      return kConfigPortable;
  }
}

// The tm x tn grid for `threads` threads that minimises the slowest thread's cost: its padded
// tile work plus the packing it does (its A rows and B columns, each once per K step; a packed
// float costs about what 16 multiply-adds do). Thread (ti, tj) = (t / tn, t % tn) gets panels
// [mp * ti / tm, mp * (ti + 1) / tm) of rows, and likewise of columns.
Grid::Grid(const Config& cfg, const Problem& p, int threads)
    : mp(ceil_div(p.M, cfg.mr)), np(ceil_div(p.N, cfg.nr)) {
  double best_cost = -1;
  for (int m = 1; m <= threads; ++m) {
    if (threads % m != 0) continue;
    const double rows = double(ceil_div(mp, m) * cfg.mr);
    const double cols = double(ceil_div(np, threads / m) * cfg.nr);
    const double cost = rows * cols + 16.0 * (rows + cols);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      tm = m;
    }
  }
  tn = threads / tm;
}

// The blocked product (M, N, K >= 1) on up to `threads` threads.
void run_blocked(const Config& cfg, const Problem& p, int threads) {
  if (run_serial(p, threads)) {
    gemm_rect(cfg, p, 0, p.M, 0, p.N);
    return;
  }
  for_each_grid_rect(cfg, p, threads, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    gemm_rect(cfg, p, m0, m1, n0, n1);
  });
}

}  // namespace nextvit::kernels::cpu::gemm_detail
