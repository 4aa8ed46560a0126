// CPU single-precision GEMM, cache-blocked in the GotoBLAS / BLIS manner.
//
// How data moves. C (M, N) is cut into tiles of MR rows x NR columns; one call of the
// micro-kernel keeps such a tile in registers and adds the products of kc steps of k to it:
// per step it loads NR floats of op(B) (vector loads), broadcasts MR floats of op(A) and does
// MR * NR / lanes fused multiply-adds. To feed it at full speed, both operands are first copied
// ("packed") into aligned buffers in exactly the order the micro-kernel reads them:
//
//   packed A: panels of MR rows; inside a panel k-major, a[k * MR + r]   (zero-padded rows)
//   packed B: panels of NR cols; inside a panel k-major, b[k * NR + c]   (zero-padded columns)
//
// so the micro-kernel streams both with unit stride whatever the transposes and leading
// dimensions of the caller. Edge tiles cost no wasted work: a panel of A with m < MR rows runs
// a micro-kernel compiled for exactly m rows, and the n < NR columns of an edge tile are
// masked at the loads of B and the store of C. The loops around it block for the caches (the
// Config block sizes in gemm_blocked_path.cpp):
//
//   for each block of mc rows of op(A)              (A block, L2)
//     for each block of kc steps of k                (K block)
//       pack A[rows, k block]                        -> abuf (mc x kc)
//       for each block of nc columns of op(B)
//         pack B[k block, cols]                      -> bbuf (kc x nc, stays in L2)
//         for each MR-row panel of the A block        (kc x MR panel stays in L1)
//           for each NR-col panel of the B block      (streamed from L2)
//             micro-kernel: C tile (+)= A panel * B panel
//
// Blocked layouts (a convolution's chunk of small images read where they lie): op(B)'s columns
// in blocks of a span (GemmColumnBlocks), or K in blocks for both operands (gemm_nt_k_blocks);
// only the packers know, and such products take these loops (gemm_nt_k_blocks copies its blocks
// together first when they are short or a narrow C would go to another path).
//
// The first K block applies the caller's beta, later ones accumulate (beta = 1). When only a
// few panels of A use each element of B, packing B would cost more than it saves, and the
// micro-kernel reads a non-transposed B in place instead (the "direct B" mode). With fewer than
// kShortK steps of k (the stem's im2col chunk: 27) the blocks of B are nc / 4 columns wide, so
// that a block and the C lines its row of tiles writes share L1.
//
// Narrow C. With few columns the N-wide vector lanes of the tiles run half empty, so other paths
// take over (gemm_cols48_path.cpp, gemm_dot_path.cpp and gemm_transposed_path.cpp):
//   - N = 48 or 49 (a 1x1 convolution on a 7 x 7 map, E-MHSA's 49 pooled tokens): tiles whose
//     rows of A are broadcast from where they lie (no packing of the weights), op(B) packed once
//     in panels of 48 columns (AVX-512, three vectors: kernels/cpu/gemm_cols48.h) or 16 (AVX2,
//     two: gemm_cols16.h), a 49th column as a dot product; 96 to 256 columns (N = 196: a 1x1
//     convolution on a 14 x 14 map) in such panels, each with at most one extra column; and
//     M = 48 or 49 with B transposed (x W^T on 49 tokens) the same kernels on C^T = B op(A)^T,
//     turned round into C;
//   - otherwise N so small that a fifth of the lanes would idle: dot products along K
//     (kernels/cpu/gemm_dot.h): A is read in place, op(B)^T (N x K, small) is copied once, and
//     each element of C is a horizontal sum of K-lane vectors;
//   - N filling the lanes less well than M would (N = 196 with M = 1152): C^T = op(B)^T op(A)^T
//     by the blocked product into a scratch buffer, then transposed into C with alpha and beta.
//
// Threads. With T OpenMP threads C is split into a tm x tn grid of rectangles (tm * tn = T),
// chosen to balance the padded work and the packing each thread repeats; every thread runs the
// whole blocked loop on its rectangle with its own pack buffers, so threads never wait on each
// other; on the transposed path each then turns its own rectangle of C^T round into C, so that
// every path runs one parallel region per product. Called from inside a parallel region (an op
// that already parallelises over images), the product runs on the calling thread only: no
// oversubscription.
//
// Micro-kernels (kernels/cpu/gemm_micro_kernel.h): AVX-512 14 x 32, AVX2+FMA 6 x 16, and a
// portable 8 x 12 in vector extensions (NEON on aarch64); 6 x (48 + 1) (AVX-512) and 6 x (16 + 1)
// (AVX2) for the 48-column path; dot-product tiles of 3 x 7 (AVX-512) and 3 x 4 (AVX2) for the dot
// path (the portable family has neither: it uses the other paths). On x86 the family is chosen at
// run time: AVX-512 when the CPU has it, else AVX2; NEXTVIT_CPU_ISA=avx512|avx2|portable forces one
// (kernels/gemm.h). Elsewhere only the portable
//
// Where each part lives. This file: the choice of ISA family, the dispatch of a product to its
// path, and the public entry points (kernels/gemm.h). The paths, each in a file of its own
// (kernels/cpu/gemm_paths.h lists their entry points): gemm_blocked_path.cpp (the loops above,
// the block sizes, the thread grid), gemm_transposed_path.cpp, gemm_dot_path.cpp and
// gemm_cols48_path.cpp (narrow C, above). What they share: gemm_problem.h (a product's
// arguments, the per-thread pack buffers) and gemm_pack.h (the packers). The micro-kernels:
// gemm_avx512.h, gemm_avx2.h, gemm_portable.h, gemm_cols48.h, gemm_cols16.h and gemm_dot.h.
#include "kernels/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/copy_floats.h"
#include "kernels/cpu/gemm_pack.h"
#include "kernels/cpu/gemm_paths.h"
#include "kernels/cpu/gemm_problem.h"
#include "kernels/cpu/isa.h"
#if NEXTVIT_CPU_X86
#include "kernels/cpu/gemm_avx512.h"
#endif

namespace nextvit::kernels::cpu {

using namespace gemm_detail;

namespace {

// gemm_nt_k_blocks packs K blocks of at least this many floats where they lie; shorter ones
// are copied together first. Measured on the training model's 2 x 2 maps (4-float blocks,
// bench_gemm's conv table, 2 threads): packed in place, 2.3-2.8x the time of the copy.
constexpr int64_t kMinPackedKBlock = 16;

// C = beta * C, for K == 0 or alpha == 0 (beta == 0 writes zeros without reading C).
void scale_c(const Problem& p) {
  for (int64_t i = 0; i < p.M; ++i) {
    float* c = p.C + i * p.ldc;
    if (p.beta == 0.0f) {
      std::memset(c, 0, sizeof(float) * p.N);
    } else if (p.beta != 1.0f) {
      for (int64_t j = 0; j < p.N; ++j) c[j] *= p.beta;
    }
  }
  p.finish_rows(0, p.M, 0, p.N);
}

int available_threads() {
  return omp_in_parallel() ? 1 : omp_get_max_threads();
}

std::atomic<GemmIsa> g_isa{GemmIsa::kAuto};

bool cpu_has_avx512() {
#if NEXTVIT_CPU_X86
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
#else
  return false;
#endif
}

bool isa_compiled(GemmIsa isa) {
  return NEXTVIT_CPU_X86 || isa == GemmIsa::kPortable;
}

// The best family this CPU runs.
GemmIsa detected_isa() {
  if (!NEXTVIT_CPU_X86) return GemmIsa::kPortable;
  return cpu_has_avx512() ? GemmIsa::kAvx512 : GemmIsa::kAvx2;
}

// The family kAuto stands for: NEXTVIT_CPU_ISA when set, else the best this CPU runs. A value
// that names no family, or one this build or CPU cannot run, is reported on stderr once and
// ignored, as OpenMP treats a bad OMP_NUM_THREADS: the first GEMM may run inside a parallel
// region, where an exception could only terminate the program.
GemmIsa default_isa() {
  static const GemmIsa isa = [] {
    const char* env = std::getenv("NEXTVIT_CPU_ISA");
    if (env == nullptr || *env == '\0') return detected_isa();
    for (GemmIsa candidate : {GemmIsa::kAvx512, GemmIsa::kAvx2, GemmIsa::kPortable}) {
      if (std::strcmp(env, gemm_isa_name(candidate)) != 0) continue;
      if (gemm_isa_runs_here(candidate)) return candidate;
      std::fprintf(stderr, "nextvit: warning: NEXTVIT_CPU_ISA=%s: %s; using %s\n", env,
                   isa_compiled(candidate) ? "this CPU has no AVX-512"
                                           : "this build for a non-x86 CPU has only the portable "
                                             "kernels",
                   gemm_isa_name(detected_isa()));
      return detected_isa();
    }
    std::fprintf(stderr,
                 "nextvit: warning: NEXTVIT_CPU_ISA=%s is not one of avx512, avx2, portable: "
                 "ignored, using %s\n",
                 env, gemm_isa_name(detected_isa()));
    return detected_isa();
  }();
  return isa;
}

// ---- dispatch -----------------------------------------------------------------------------------

// Whether run() gives a plain product (no blocks) to the blocked path.
bool takes_blocked_path(const Problem& p) {
  if (p.M <= 0 || p.N <= 0 || p.K <= 0 || p.alpha == 0.0f) return false;
#if NEXTVIT_CPU_X86
  if (use_cols48(p) || use_cols48_transposed(p) || dot_config(config(), p) != nullptr) {
    return false;
  }
#endif
  return !use_transposed(config(), p);
}

// One product on up to `threads` threads: the dot path for very narrow C, the transposed path for
// narrow C and tall A, else the blocked product.
void run(const Problem& p, int threads) {
  if (p.M <= 0 || p.N <= 0) return;
  if (p.K <= 0 || p.alpha == 0.0f) {
    scale_c(p);
    return;
  }
  const Config& cfg = config();
  if (p.blocked_layout()) {  // only the blocked path's packers read blocks
    run_blocked(cfg, p, threads);
    return;
  }
#if NEXTVIT_CPU_X86
  if (use_cols48(p)) {
    run_cols48(p, threads);
    return;
  }
  if (use_cols48_transposed(p)) {
    run_cols48_transposed(p, threads);
    return;
  }
  if (const DotConfig* d = dot_config(cfg, p)) {
    run_dot(*d, p, threads);
    return;
  }
#endif
  if (use_transposed(cfg, p)) {
    run_transposed(cfg, p, threads);
    return;
  }
  run_blocked(cfg, p, threads);
}

// b_span: floats of a row of B when its columns lie in blocks (GemmColumnBlocks); k_span: of a
// row of A and of B^T when K does (GemmKBlocks); else -1.
void check_args(const char* fn, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                int64_t lda, int64_t ldb, int64_t ldc, int64_t b_span = -1, int64_t k_span = -1) {
  NV_CHECK(M >= 0 && N >= 0 && K >= 0, "{}: negative size M={} N={} K={}", fn, M, N, K);
  // A row must fit in its leading dimension (an empty matrix accepts any ld >= 0).
  const int64_t k_row = k_span >= 0 ? std::min(k_span, K) : K;
  const int64_t min_lda = trans_a ? M : k_row;
  const int64_t min_ldb = trans_b ? k_row : b_span >= 0 ? std::min(b_span, N) : N;
  NV_CHECK(lda >= min_lda && ldb >= min_ldb && ldc >= N,
           "{}: leading dimensions lda={} ldb={} ldc={} too small for M={} N={} K={} "
           "(trans_a={}, trans_b={})",
           fn, lda, ldb, ldc, M, N, K, trans_a, trans_b);
}

}  // namespace

GemmIsa gemm_isa() {
  GemmIsa isa = g_isa.load(std::memory_order_relaxed);
  return isa == GemmIsa::kAuto ? default_isa() : isa;
}

bool gemm_isa_runs_here(GemmIsa isa) {
  return isa_compiled(isa) && (isa != GemmIsa::kAvx512 || cpu_has_avx512());
}

GemmIsa set_gemm_isa(GemmIsa isa) {
  NV_CHECK(isa_compiled(isa), "set_gemm_isa: the {} kernels exist only in x86-64 builds",
           gemm_isa_name(isa));
  NV_CHECK(isa != GemmIsa::kAvx512 || cpu_has_avx512(),
           "set_gemm_isa: this CPU has no AVX-512, cannot force the avx512 GEMM kernel");
  const GemmIsa previous = gemm_isa();
  g_isa.store(isa, std::memory_order_relaxed);
  return previous;
}

const char* gemm_isa_name(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::kAvx512:
      return "avx512";
    case GemmIsa::kAvx2:
      return "avx2";
    case GemmIsa::kPortable:
      return "portable";
    default:
      return "auto";
  }
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check_args("gemm", trans_a, trans_b, M, N, K, lda, ldb, ldc);
  run({trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, {}}, available_threads());
}

void gemm_with_pass(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc, const GemmRowPass& pass, const GemmRowAffine& b_map,
                    const GemmColumnBlocks& b_blocks) {
  NV_CHECK(b_blocks.span >= 0 && b_blocks.stride >= 0,
           "gemm_with_pass: column blocks need span >= 0 and stride >= 0, got {} and {}",
           b_blocks.span, b_blocks.stride);
  NV_CHECK(!b_blocks.on() || !trans_b,
           "gemm_with_pass: column blocks apply to a B that is not transposed");
  // A row of a blocked B holds one block's columns.
  check_args("gemm_with_pass", trans_a, trans_b, M, N, K, lda, ldb, ldc,
             b_blocks.on() ? b_blocks.span : -1);
  NV_CHECK((b_map.scale == nullptr) == (b_map.shift == nullptr),
           "gemm_with_pass: the map of B's rows needs both scale and shift, or neither");
  NV_CHECK(!b_map.on() || !trans_b,
           "gemm_with_pass: the map of B's rows applies to a B that is not transposed");
  run({trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pass, {}, b_map, b_blocks},
      available_threads());
}

void gemm_nt_k_blocks(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                      const GemmKBlocks& blocks) {
  NV_CHECK(blocks.span >= 1 && blocks.stride_a >= 0 && blocks.stride_b >= 0,
           "gemm_nt_k_blocks: K blocks need span >= 1 and strides >= 0, got span={} "
           "stride_a={} stride_b={}",
           blocks.span, blocks.stride_a, blocks.stride_b);
  check_args("gemm_nt_k_blocks", false, true, M, N, K, lda, ldb, ldc, -1, blocks.span);
  const int threads = available_threads();
  const Problem plain{false, true, M, N, K, alpha, A, K, B, K, beta, C, ldc, {}};
  if (blocks.span >= kMinPackedKBlock && takes_blocked_path(plain)) {
    Problem p{false, true, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, {}};
    p.k_blocks = blocks;
    run(p, threads);
    return;
  }
  // Short blocks, or a narrow C (the dot and transposed paths, which read their operands in
  // place: a 3x3 convolution of one input channel has 9 columns of C): the blocks copied
  // together first, by all threads. (The dot path's K-lane sums are also the more accurate over
  // thousands of steps of k.) An operand whose blocks lie back to back (stride = span) is used
  // as it is.
  const bool copy_a = blocks.stride_a != blocks.span, copy_b = blocks.stride_b != blocks.span;
  PackBuffers& buf = thread_buffers();
  float* const ap =
      copy_a ? PackBuffers::grow(buf.k_blocks_a, buf.k_blocks_a_size, static_cast<size_t>(M * K))
             : nullptr;
  float* const bp =
      copy_b ? PackBuffers::grow(buf.k_blocks_b, buf.k_blocks_b_size, static_cast<size_t>(N * K))
             : nullptr;
  const int64_t rows = (copy_a ? M : 0) + (copy_b ? N : 0);
  // Row r: a row of A, then of B; each a run of K floats from its blocks.
#pragma omp parallel for schedule(static) \
    num_threads(threads) if (threads > 1 && rows * K >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const bool is_a = copy_a && r < M;
    const int64_t row = is_a ? r : r - (copy_a ? M : 0);
    const float* src = is_a ? A + row * lda : B + row * ldb;
    float* dst = (is_a ? ap : bp) + row * K;
    const int64_t stride = is_a ? blocks.stride_a : blocks.stride_b;
    for (int64_t k0 = 0; k0 < K; k0 += blocks.span) {
      copy_floats(src + k0 / blocks.span * stride, dst + k0, std::min(blocks.span, K - k0));
    }
  }
  run({false,
       true,
       M,
       N,
       K,
       alpha,
       copy_a ? ap : A,
       copy_a ? K : lda,
       copy_b ? bp : B,
       copy_b ? K : ldb,
       beta,
       C,
       ldc,
       {}},
      threads);
}

void gemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, int64_t stride_a, const float* B,
                          int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
                          int64_t stride_c, int64_t batch) {
  check_args("gemm_strided_batched", trans_a, trans_b, M, N, K, lda, ldb, ldc);
  NV_CHECK(batch >= 0, "gemm_strided_batched: negative batch {}", batch);
  if (batch == 0 || M == 0 || N == 0) return;
  auto item = [&](int64_t b) {
    return Problem{
        trans_a, trans_b,          M,   N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb,
        beta,    C + b * stride_c, ldc, {}};
  };
  const int threads = available_threads();
  const double macs = double(M) * double(N) * double(K);
  // Threads over items when that keeps them evenly busy (or the items are too small to split);
  // otherwise items one after another, each split across the threads.
  const bool over_items =
      threads > 1 && batch >= threads &&
      (batch % threads == 0 || batch >= 4 * threads || macs < 4 * kParallelMinMacs);
  if (over_items) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < batch; ++b) run(item(b), 1);
  } else {
    for (int64_t b = 0; b < batch; ++b) run(item(b), threads);
  }
}

// ---- gemm_rows_b --------------------------------------------------------------------------------

bool gemm_rows_b_supported() {
  return gemm_isa() == GemmIsa::kAvx512;
}

#if NEXTVIT_CPU_X86
int64_t gemm_rows_b_packed_floats(int64_t M, int64_t K) {
  return ceil_div(M, micro::kMr512) * panel_stride(K, micro::kMr512);
}

void gemm_rows_b_pack(int64_t M, int64_t K, const float* A, int64_t lda, float* packed) {
  // The same panels as the blocked product, over all of K at once (no K blocks).
  const Problem p{false, false, M, 0, K, 1.0f, A, lda, nullptr, 0, 0.0f, nullptr, 0, {}};
  pack_a<micro::kMr512>(p, 0, M, 0, K, packed);
}

void gemm_rows_b(int64_t M, int64_t K, int64_t n, float alpha, const float* packed,
                 const float* const* rows, const uint32_t* masks, float beta, float* C,
                 int64_t ldc) {
  NV_CHECK(gemm_rows_b_supported(), "gemm_rows_b: needs the AVX-512 micro-kernels");
  NV_CHECK(n >= 1 && n <= kGemmRowsMaxN && M >= 0 && K >= 1,
           "gemm_rows_b: n={} must be in [1, {}], M={} >= 0, K={} >= 1", n, kGemmRowsMaxN, M, K);
  const int64_t ps = panel_stride(K, micro::kMr512);
  for (int64_t i = 0; i < M; i += micro::kMr512) {
    const int m = static_cast<int>(std::min<int64_t>(micro::kMr512, M - i));
    micro::kRowsKernels[m - 1](K, packed + i / micro::kMr512 * ps, rows, masks, C + i * ldc, ldc,
                               static_cast<int>(n), alpha, beta);
  }
}
#else
int64_t gemm_rows_b_packed_floats(int64_t, int64_t) {
  NV_FAIL("gemm_rows_b: needs the AVX-512 micro-kernels (x86-64 only)");
}
void gemm_rows_b_pack(int64_t, int64_t, const float*, int64_t, float*) {
  NV_FAIL("gemm_rows_b: needs the AVX-512 micro-kernels (x86-64 only)");
}
void gemm_rows_b(int64_t, int64_t, int64_t, float, const float*, const float* const*,
                 const uint32_t*, float, float*, int64_t) {
  NV_FAIL("gemm_rows_b: needs the AVX-512 micro-kernels (x86-64 only)");
}
#endif

}  // namespace nextvit::kernels::cpu
