#pragma once
// The paths a product can take, each in a file of its own; kernels/cpu/gemm.cpp (the overview,
// "Narrow C") says which product goes where and dispatches it. Every path computes the whole of
// C = alpha op(A) op(B) + beta C (M, N, K >= 1, alpha != 0) and runs the caller's row pass on
// each row range as it finishes.
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/gemm_micro_kernel.h"
#include "kernels/cpu/gemm_problem.h"
#include "kernels/cpu/isa.h"

namespace nextvit::kernels::cpu::gemm_detail {

// ---- the blocked path (kernels/cpu/gemm_blocked_path.cpp) --------------------------------------

// Block sizes: a kc x MR panel of A sits in L1 (48 KiB here) while B panels stream past it; the
// kc x nc block of packed B sits in L2 (2 MiB here); the mc x kc block of A is re-read once per
// B block.
struct Config {
  int mr, nr;
  int64_t kc, mc, nc;
  void (*pack_a)(const Problem&, int64_t, int64_t, int64_t, int64_t, float*);
  void (*pack_b)(const Problem&, int64_t, int64_t, int64_t, int64_t, float*);
  const micro::MicroKernel* kernels[2];  // [direct B][rows - 1]
};

// The block sizes and micro-kernels of the family gemm_isa() selects.
const Config& config();

// C[m0:m1, n0:n1] of the product, on the calling thread.
void gemm_rect(const Config& cfg, const Problem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

// A split of C into a tm x tn grid of rectangles, one per thread: the grid for `threads` threads
// that minimises the slowest thread's cost.
struct Grid {
  int tm = 1, tn = 1;
  int64_t mp = 1, np = 1;  // panels of rows (MR) and columns (NR) of C
  Grid(const Config& cfg, const Problem& p, int threads);
  int team() const { return tm * tn; }
  // Thread t's rectangle C[m0:m1, n0:n1] through rect(m0, m1, n0, n1).
  template <typename RectFn>
  void visit(const Config& cfg, const Problem& p, int t, const RectFn& rect) const {
    const int ti = t / tn, tj = t % tn;
    rect(std::min(p.M, mp * ti / tm * cfg.mr), std::min(p.M, mp * (ti + 1) / tm * cfg.mr),
         std::min(p.N, np * tj / tn * cfg.nr), std::min(p.N, np * (tj + 1) / tn * cfg.nr));
  }
};

// rect(m0, m1, n0, n1) on each rectangle of the grid for `threads` threads, in one parallel
// region: the blocked path computes its rectangle there, the transposed path turns it round too
// while it is still in that core's L2. Were fewer threads granted than asked for, each would take
// several rectangles.
template <typename RectFn>
void for_each_grid_rect(const Config& cfg, const Problem& p, int threads, const RectFn& rect) {
  const Grid g(cfg, p, threads);
  const int team = g.team();
#pragma omp parallel num_threads(team)
  for (int t = omp_get_thread_num(); t < team; t += omp_get_num_threads()) g.visit(cfg, p, t, rect);
}

// The blocked product on up to `threads` threads.
void run_blocked(const Config& cfg, const Problem& p, int threads);

// ---- the transposed path: narrow C, tall A (kernels/cpu/gemm_transposed_path.cpp) --------------

// Whether C^T = op(B)^T op(A)^T fills the blocked tiles' lanes enough better to pay for turning
// C^T round.
bool use_transposed(const Config& cfg, const Problem& p);
void run_transposed(const Config& cfg, const Problem& p, int threads);

// C[i0:i1, j0:j1] = alpha * T^T + beta * C for T = C^T (N x M, leading dimension M) at t; the
// 48-column path turns its flipped products round with it too.
void store_transposed(const Problem& p, const float* t, int64_t i0, int64_t i1, int64_t j0,
                      int64_t j1);

#if NEXTVIT_CPU_X86
// ---- the dot path: few columns (kernels/cpu/gemm_dot_path.cpp) ---------------------------------

// Steps of k below which a product's C is not worth a horizontal sum per element: the dot path
// and the 48-column path leave such products (the attention's q k^T over a head's 32 channels)
// to the blocked path.
constexpr int64_t kDotMinK = 128;

struct DotConfig;
// The dot kernels' family for this product, or nullptr when it does not take the dot path.
const DotConfig* dot_config(const Config& cfg, const Problem& p);
void run_dot(const DotConfig& d, const Problem& p, int threads);

// ---- the 48-column path: N = 48 or 49, or 96 to 256 in panels (gemm_cols48_path.cpp) ---------

bool use_cols48(const Problem& p);
void run_cols48(const Problem& p, int threads);
// x W^T with 48 or 49 rows, as the 48-column product C^T = B op(A)^T.
bool use_cols48_transposed(const Problem& p);
void run_cols48_transposed(const Problem& p, int threads);
#endif

}  // namespace nextvit::kernels::cpu::gemm_detail
