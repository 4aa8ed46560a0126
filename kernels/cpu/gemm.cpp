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
// Config block sizes below):
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
// take over (see "the 48-column path", "the dot path" and "the transposed path" below):
//   - N = 48 or 49 (a 1x1 convolution on a 7 x 7 map, E-MHSA's 49 pooled tokens) on AVX-512:
//     three-vector-wide tiles whose rows of A are broadcast from where they lie (no packing of
//     the weights), op(B)'s 48 first columns packed once, a 49th column as a dot product
//     (kernels/cpu/gemm_cols48.h); 96 to 256 columns (N = 196: a 1x1 convolution on a 14 x 14
//     map) in panels of 48, each with at most one extra column; and M = 48 or 49 with B transposed
//     (x W^T on 49 tokens) the same kernels on C^T = B op(A)^T, turned round into C;
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
// portable 8 x 12 in vector extensions (NEON on aarch64); 6 x (48 + 1) for the 48-column path
// (AVX-512); dot-product tiles of 3 x 7 (AVX-512) and 3 x 4 (AVX2) for the dot path (the portable
// family has neither: it uses the other paths). On x86
// the family is chosen at run time: AVX-512 when the CPU has it, else AVX2;
// NEXTVIT_CPU_ISA=avx512|avx2|portable forces one (kernels/gemm.h). Elsewhere only the portable
// family is compiled.
#include "kernels/gemm.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/copy_floats.h"
#include "kernels/cpu/gemm_micro_kernel.h"
#include "kernels/cpu/gemm_portable.h"
#if NEXTVIT_CPU_X86
#include <immintrin.h>

#include "kernels/cpu/gemm_avx2.h"
#include "kernels/cpu/gemm_avx512.h"
#include "kernels/cpu/gemm_cols48.h"
#include "kernels/cpu/gemm_dot.h"
#endif

namespace nextvit::kernels::cpu {
namespace {

// One product's arguments, as the caller passed them (the packers resolve the transposes).
struct Problem {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  GemmRowPass pass;  // run on rows of C as they are finished (see kernels/gemm.h)
  // Maps of the rows of op(A)^T and op(B) (per k) applied while packing: b_map is the caller's
  // (kernels/gemm.h); a_map only in the transposed path, where the caller's B becomes op(A)^T.
  GemmRowAffine a_map = {}, b_map = {};
  GemmColumnBlocks b_blocks = {};  // op(B)'s columns in blocks (kernels/gemm.h): blocked path only
  GemmKBlocks k_blocks = {};       // K in blocks (gemm_nt_k_blocks): blocked path only
  bool blocked_layout() const { return b_blocks.on() || k_blocks.on(); }

  // The pass over C[i, j0 : j0 + n) for rows i in [i0, i1).
  void finish_rows(int64_t i0, int64_t i1, int64_t j0, int64_t n) const {
    if (pass.fn == nullptr || n <= 0) return;
    for (int64_t i = i0; i < i1; ++i) pass.fn(pass.ctx, i, C + i * ldc + j0, n);
  }
};

// The product C^T (N x M) = op(B)^T op(A)^T into t (contiguous, leading dimension M): the
// operands swap places and transposes, the maps go with their operands, and alpha, beta and
// the pass stay with C (the caller applies them as it turns t round into C).
Problem transposed_problem(const Problem& p, float* t) {
  Problem f = p;
  f.pass = {};
  f.a_map = p.b_map;  // rows of op(B) are rows of the flipped op(A)^T
  f.b_map = p.a_map;
  f.trans_a = !p.trans_b;
  f.trans_b = !p.trans_a;
  f.M = p.N;
  f.N = p.M;
  f.A = p.B;
  f.lda = p.ldb;
  f.B = p.A;
  f.ldb = p.lda;
  f.alpha = 1.0f;
  f.beta = 0.0f;
  f.C = t;
  f.ldc = p.M;
  return f;
}

// ---- packing ------------------------------------------------------------------------------------

// Floats between the starts of consecutive packed panels: kb * P rounded up to an odd number of
// cache lines. Panels a multiple of 4 KiB apart would all map to the same L1 sets, and the
// packers write many panels side by side (and the micro-kernel walks them in turn).
inline int64_t panel_stride(int64_t kb, int P) {
  int64_t lines = (kb * P + 15) / 16;
  if (lines % 2 == 0) ++lines;
  return lines * 16;
}

// Copies P floats (P a compile-time constant) with full-width vector moves where possible.
template <int P>
inline void copy_lanes(float* d, const float* s) {
#if NEXTVIT_CPU_X86
  if constexpr (P % 8 == 0) {
    for (int q = 0; q < P; q += 8) _mm256_storeu_ps(d + q, _mm256_loadu_ps(s + q));
    return;
  }
#endif
  std::memcpy(d, s, sizeof(float) * P);
}

#if NEXTVIT_CPU_X86
// Transposes the 8 x 8 block held in rows r[0..7] (r[i] = row i) in registers.
inline void transpose8x8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
#endif

// Packs `width` (<= P) source vectors into one panel of P lanes, k-major:
//   dst[k * P + q] = src[q * stride + k] for k < kb, q < width; dst[k * P + q] = 0 for q >= width.
// This is the transposing case: each source vector is contiguous in k (rows of a non-transposed
// A, or columns j of a transposed B). Panels move 8 x 8 blocks through registers, eight source
// vectors at a time, each read front to back (eight sequential streams, which the hardware
// prefetcher follows); vectors beyond `width` enter as zeros. With P not a multiple of 8 the
// last group of vectors starts at P - 8 and rewrites a few lanes with equal values.
//
// kPrefetchNext: while a group is read, software prefetches fetch the next eight vectors, one
// line per two steps of k. A stream of 12 lines (kb = 192) is too short for the hardware
// prefetcher to get ahead of: when the source comes from memory, as a layer's weights do at
// batch 1 (op(B) of the transposed path and of x W^T), every group started cold. Measured on
// the 2-core Zen 5 (weights cold, 2 threads): the 14 x 14 1x1 convolutions and the 7 x 7 linear
// layers 2-10 % faster, Next-ViT-S at batch 1 1.5-3.3 % (in-process A/B). Only B's packer asks
// for it: A's panels (weights at larger batches) are reused across many columns.
template <int P, bool kPrefetchNext>
void pack_panel_transposing(const float* src, int64_t stride, int64_t kb, int width, float* dst) {
  int64_t k_done = 0;
#if NEXTVIT_CPU_X86
  if constexpr (P >= 8) {
    k_done = kb / 8 * 8;
    for (int q0 = 0; q0 < P; q0 += 8) {
      const int q = std::min(q0, P - 8);
      const int live = std::clamp(width - q, 0, 8);  // source vectors present in this group
      for (int64_t k = 0; k < k_done; k += 8) {
        if (kPrefetchNext && k % 16 == 0) {
          // The line at this k of each of the next eight source vectors (the next group, or
          // after the last group the next panel's first): their streams start warm.
          const uintptr_t next =
              reinterpret_cast<uintptr_t>(src) + uintptr_t((q + 8) * stride + k) * sizeof(float);
          for (int i = 0; i < 8; ++i) {
            _mm_prefetch(
                reinterpret_cast<const char*>(next + uintptr_t(i * stride) * sizeof(float)),
                _MM_HINT_T0);
          }
        }
        __m256 r[8];
        for (int i = 0; i < 8; ++i) {
          r[i] = i < live ? _mm256_loadu_ps(src + (q + i) * stride + k) : _mm256_setzero_ps();
        }
        transpose8x8(r);
        for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (k + i) * P + q, r[i]);
      }
    }
  }
#endif
  for (int64_t k = k_done; k < kb; ++k) {
    float* d = dst + k * P;
    for (int q = 0; q < width; ++q) d[q] = src[q * stride + k];
    for (int q = width; q < P; ++q) d[q] = 0.0f;
  }
}

// The non-transposing case: for every k, `width` contiguous source floats for each of the
// panels. Walks k outermost so that each source row is read once, front to back, across all
// panels (a panel-by-panel walk would hop between kb rows every P floats and defeat the
// prefetcher when the source comes from memory).
//   panel p of dst (at dst + p * panel_stride): dst[k * P + q] = src[k * stride + p * P + q]
//
// With a map, row k is stored as src * scale[k] + shift[k]: the expression of the BatchNorm
// kernel's normalisation (kernels/cpu/batch_norm_passes.h), compiled alike, so each packed
// value has the bits the BatchNorm would have stored; the padding stays zero.
template <int P>
void pack_panels_copying(const float* src, int64_t stride, int64_t kb, int64_t width, float* dst,
                         const float* scale, const float* shift) {
  const int64_t full = width / P, rest = width % P, ps = panel_stride(kb, P);
  for (int64_t k = 0; k < kb; ++k) {
    const float* s = src + k * stride;
    float* d = dst + k * P;
    if (scale != nullptr) {
      const float a = scale[k], b = shift[k];
      for (int64_t p = 0; p < full; ++p) {
        for (int q = 0; q < P; ++q) d[p * ps + q] = s[p * P + q] * a + b;
      }
      if (rest > 0) {
        float* dr = d + full * ps;
        for (int64_t q = 0; q < rest; ++q) dr[q] = s[full * P + q] * a + b;
        std::memset(dr + rest, 0, sizeof(float) * (P - rest));
      }
      continue;
    }
    for (int64_t p = 0; p < full; ++p) copy_lanes<P>(d + p * ps, s + p * P);
    if (rest > 0) {
      float* dr = d + full * ps;
      std::memcpy(dr, s + full * P, sizeof(float) * rest);
      std::memset(dr + rest, 0, sizeof(float) * (P - rest));
    }
  }
}

// The copying case with op(B)'s columns in blocks (GemmColumnBlocks): columns [j0, j0 + width)
// walked in runs that stay inside one block and one panel, each run copied for every k (a run of
// a block's rows is one stretch of memory when ld equals the span: a small image's planes).
//   dst[panel * ps + k * P + lane] = src(k, j0 + panel * P + lane), through the map if any
template <int P>
void pack_panels_blocked(const float* B, int64_t ld, const GemmColumnBlocks& blocks, int64_t k0,
                         int64_t kb, int64_t j0, int64_t width, float* dst, const float* scale,
                         const float* shift) {
  const int64_t ps = panel_stride(kb, P);
  for (int64_t j = 0; j < width;) {
    const int64_t col = j0 + j, q = col % blocks.span, lane = j % P;
    const int64_t len = std::min({blocks.span - q, int64_t(P) - lane, width - j});
    const float* s = B + col / blocks.span * blocks.stride + k0 * ld + q;
    float* d = dst + j / P * ps + lane;
    for (int64_t k = 0; k < kb; ++k, s += ld, d += P) {
      if (scale != nullptr) {
        const float a = scale[k0 + k], b = shift[k0 + k];
        for (int64_t i = 0; i < len; ++i) d[i] = s[i] * a + b;
      } else {
        copy_floats(s, d, len);
      }
    }
    j += len;
  }
  if (const int64_t rest = width % P; rest > 0) {
    float* d = dst + width / P * ps + rest;
    for (int64_t k = 0; k < kb; ++k) std::memset(d + k * P, 0, sizeof(float) * (P - rest));
  }
}

// An operand block -- k [k0, k0 + kb) x [x0, x0 + xb) of its other dimension (rows of op(A),
// columns of op(B)) -- into P-wide panels, panel_stride(kb, P) apart. M holds it either k-major
// (element (x, k) at M[k * ld + x]: rows are copied, through the map when there is one) or
// x-major (at M[x * ld + k]: transposed; never mapped, gemm_with_pass refuses it).
template <int P, bool kPrefetchNext>
void pack_block(const float* M, int64_t ld, bool k_major, int64_t x0, int64_t xb, int64_t k0,
                int64_t kb, const GemmRowAffine& map, float* dst) {
  if (k_major) {
    pack_panels_copying<P>(M + k0 * ld + x0, ld, kb, xb, dst, map.on() ? map.scale + k0 : nullptr,
                           map.on() ? map.shift + k0 : nullptr);
    return;
  }
  for (int64_t xp = 0; xp < xb; xp += P) {
    const int width = static_cast<int>(std::min<int64_t>(P, xb - xp));
    pack_panel_transposing<P, kPrefetchNext>(M + (x0 + xp) * ld + k0, ld, kb, width,
                                             dst + xp / P * panel_stride(kb, P));
  }
}

// The transposing case with k in blocks (GemmKBlocks): each stretch of [k0, k0 + kb) inside one
// block is packed on its own, at its rows of the panels.
template <int P>
void pack_block_k_blocked(const float* M, int64_t ld, int64_t span, int64_t stride, int64_t x0,
                          int64_t xb, int64_t k0, int64_t kb, float* dst) {
  if (stride == span) {  // blocks back to back: a plain operand, packed in one walk over k
    pack_block<P, false>(M, ld, false, x0, xb, k0, kb, {}, dst);
    return;
  }
  const int64_t ps = panel_stride(kb, P);
  for (int64_t k = k0; k < k0 + kb;) {
    const int64_t q = k % span, len = std::min(span - q, k0 + kb - k);
    const float* src = M + k / span * stride + q;
    for (int64_t xp = 0; xp < xb; xp += P) {
      const int width = static_cast<int>(std::min<int64_t>(P, xb - xp));
      pack_panel_transposing<P, false>(src + (x0 + xp) * ld, ld, len, width,
                                       dst + xp / P * ps + (k - k0) * P);
    }
    k += len;
  }
}

// Rows [i0, i0 + mb) x k [k0, k0 + kb) of op(A) -> MR-row panels; op(A)(i, k) is A[k * lda + i]
// when A is transposed.
template <int MR>
void pack_a(const Problem& p, int64_t i0, int64_t mb, int64_t k0, int64_t kb, float* dst) {
  if (p.k_blocks.on()) {
    pack_block_k_blocked<MR>(p.A, p.lda, p.k_blocks.span, p.k_blocks.stride_a, i0, mb, k0, kb, dst);
    return;
  }
  pack_block<MR, false>(p.A, p.lda, p.trans_a, i0, mb, k0, kb, p.a_map, dst);
}

// k [k0, k0 + kb) x columns [j0, j0 + nb) of op(B) -> NR-column panels; op(B)(k, j) is
// B[k * ldb + j] when B is not transposed.
template <int NR>
void pack_b(const Problem& p, int64_t k0, int64_t kb, int64_t j0, int64_t nb, float* dst) {
  if (p.b_blocks.on()) {
    pack_panels_blocked<NR>(p.B, p.ldb, p.b_blocks, k0, kb, j0, nb, dst, p.b_map.scale,
                            p.b_map.shift);
    return;
  }
  if (p.k_blocks.on()) {
    pack_block_k_blocked<NR>(p.B, p.ldb, p.k_blocks.span, p.k_blocks.stride_b, j0, nb, k0, kb, dst);
    return;
  }
  pack_block<NR, true>(p.B, p.ldb, !p.trans_b, j0, nb, k0, kb, p.b_map, dst);
}

// ---- micro-kernels: gemm_avx512.h, gemm_avx2.h, gemm_portable.h --------------------------------

using micro::MicroKernel;
#if NEXTVIT_CPU_X86
using micro::kKernels256;
using micro::kKernels512;
using micro::kMr256;
using micro::kMr512;
using micro::kNr256;
using micro::kNr512;
using micro::kRowsKernels;
#endif
using micro::kKernelsPortable;
using micro::kMrPortable;
using micro::kNrPortable;

// ---- blocking -----------------------------------------------------------------------------------

// Block sizes: a kc x MR panel of A sits in L1 (48 KiB here) while B panels stream past it; the
// kc x nc block of packed B sits in L2 (2 MiB here); the mc x kc block of A is re-read once per
// B block.
struct Config {
  int mr, nr;
  int64_t kc, mc, nc;
  void (*pack_a)(const Problem&, int64_t, int64_t, int64_t, int64_t, float*);
  void (*pack_b)(const Problem&, int64_t, int64_t, int64_t, int64_t, float*);
  const MicroKernel* kernels[2];  // [direct B][rows - 1]
};

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

// gemm_nt_k_blocks packs K blocks of at least this many floats where they lie; shorter ones
// are copied together first. Measured on the training model's 2 x 2 maps (4-float blocks,
// bench_gemm's conv table, 2 threads): packed in place, 2.3-2.8x the time of the copy.
constexpr int64_t kMinPackedKBlock = 16;

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Per-thread pack buffers, 64-byte aligned, grown on demand and kept for the thread's life
// (OpenMP reuses its threads, so this allocates once per thread).
struct PackBuffers {
  float* a = nullptr;
  float* b = nullptr;
  float* c = nullptr;  // C^T of the transposed path
  // gemm_nt_k_blocks' operands with their K blocks copied together, read by the product that
  // follows (which packs into a and b meanwhile).
  float* k_blocks_a = nullptr;
  float* k_blocks_b = nullptr;
  size_t a_size = 0, b_size = 0, c_size = 0, k_blocks_a_size = 0, k_blocks_b_size = 0;
  ~PackBuffers() {
    std::free(a);
    std::free(b);
    std::free(c);
    std::free(k_blocks_a);
    std::free(k_blocks_b);
  }
  static float* grow(float*& p, size_t& size, size_t need) {
    if (need > size) {
      std::free(p);
      p = static_cast<float*>(std::aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64));
      NV_CHECK(p != nullptr, "gemm: cannot allocate {} bytes of pack buffer", need * sizeof(float));
      size = need;
    }
    return p;
  }
};

PackBuffers& thread_buffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

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

// Below this many multiply-adds a product runs on one thread: waking the second costs a few
// microseconds, which is what ~1 M multiply-adds take on one core...
constexpr double kParallelMinMacs = 1 << 20;
// ...unless its operands hold this many floats (1 MiB): a product with very few rows, such as
// a classifier at batch 1 (1 x 1000 x 1024: 1 M multiply-adds on 4 MB of weights from memory),
// is bound by memory, which two cores stream faster than one (2-core Zen 5, weights cold:
// 0.30-0.32 -> 0.17-0.18 ms).
constexpr double kParallelMinFloats = 1 << 18;

// Whether a product runs on the calling thread alone.
inline bool run_serial(const Problem& p, int threads) {
  const double macs = double(p.M) * double(p.N) * double(p.K);
  const double floats = double(p.K) * double(p.M + p.N);
  return threads <= 1 || (macs < kParallelMinMacs && floats < kParallelMinFloats);
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

// ---- the dot path: few columns (kernels/cpu/gemm_dot.h) ---------------------------------------

#if NEXTVIT_CPU_X86
// A family of dot-product kernels: tiles of `rows` x `cols` elements of C, kernels[(r - 1) *
// cols + c - 1] for an r x c edge tile.
struct DotConfig {
  int rows, cols;
  const micro::DotKernel* kernels;
};
constexpr DotConfig kDot512 = {micro::kDotRows512, micro::kDotCols512,
                               micro::kDotKernels512[0].data()};
constexpr DotConfig kDot256 = {micro::kDotRows256, micro::kDotCols256,
                               micro::kDotKernels256[0].data()};

// The dot path takes a product whose C is narrow enough that the blocked tiles would leave more
// than a fifth of their lanes empty (N = 49: 64 lanes for 49 columns), with A read in place (not
// transposed) and K long enough to pay for one horizontal sum per element of C. op(B)^T is then
// at most kDotMaxN x K floats: copying it (when B is not transposed) is cheap.
constexpr int64_t kDotMaxN = 256, kDotMinK = 128;
// Rows of A per block: they stay in L2 while every group of columns of C passes over them.
constexpr int64_t kDotBlockBytes = 512 << 10;

const DotConfig* dot_config(const Config& cfg, const Problem& p) {
  if (p.trans_a || p.N > kDotMaxN || p.K < kDotMinK) return nullptr;
  if (10 * p.N >= 8 * ceil_div(p.N, cfg.nr) * cfg.nr) return nullptr;
  switch (gemm_isa()) {
    case GemmIsa::kAvx512:
      return &kDot512;
    case GemmIsa::kAvx2:
      return &kDot256;
    default:
      return nullptr;
  }
}

// bt[j * ldbt + k] = op(B)(k, j) = B[k * ldb + j] for a B that is not transposed: 8 x 8 blocks
// through registers, the ragged edges one float at a time.
void transpose_b(const Problem& p, float* bt, int64_t ldbt) {
  const int64_t n8 = p.N / 8 * 8, k8 = p.K / 8 * 8;
  for (int64_t j0 = 0; j0 < n8; j0 += 8) {
    for (int64_t k0 = 0; k0 < k8; k0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(p.B + (k0 + i) * p.ldb + j0);
      transpose8x8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(bt + (j0 + i) * ldbt + k0, r[i]);
    }
  }
  for (int64_t j = 0; j < p.N; ++j) {
    for (int64_t k = j < n8 ? k8 : 0; k < p.K; ++k) bt[j * ldbt + k] = p.B[k * p.ldb + j];
  }
  if (!p.b_map.on()) return;
  // The row map (kernels/gemm.h), in the packers' expression: row k of B is column k of bt.
  for (int64_t j = 0; j < p.N; ++j) {
    float* row = bt + j * ldbt;
    for (int64_t k = 0; k < p.K; ++k) row[k] = row[k] * p.b_map.scale[k] + p.b_map.shift[k];
  }
}

// Steps of k per pass of the dot kernels. A group's rows of bt (cols x K floats) must stay in L1
// while every row tile of a block passes down them; at K = 2304 (Next-ViT-S's 2304 -> 768 1x1
// convolution at 7 x 7) the 7 rows of an AVX-512 group take 63 KiB, more than the 48 KiB L1,
// and the product ran at 55 % of peak against 88 % at K = 768. Longer K is therefore cut into
// equal passes (multiples of 16) whose rows of bt fit in kDotL1Bytes, each pass adding its sums
// into C (beta = 1 after the first).
constexpr int64_t kDotL1Bytes = 24 << 10;

int64_t dot_pass_k(const DotConfig& d, int64_t K) {
  const int64_t most =
      std::max<int64_t>(16, kDotL1Bytes / (d.cols * int64_t(sizeof(float))) / 16 * 16);
  const int64_t passes = ceil_div(K, most);
  return ceil_div(ceil_div(K, passes), 16) * 16;
}

// Software prefetch, into L2, of the rows of A the next block of dot_rect will read, spread
// evenly over the kernel calls of the current block: each call asks its kernel to prefetch a
// short run of lines, one per step of its k loop. Why: at batch 1 A is a layer's weights, coming
// from memory; the first group of columns to pass down a block read them while the cores mostly
// waited (the later groups find them in L2). The hardware prefetcher did not hide that: each row
// of A is a stream of its own (a page of its own at K = 1024), three of them read at a time, and
// it follows a stream only after a few misses and within a page. Fetched during the previous
// block, the rows arrive while the cores compute. Measured on the 2-core Xeon (Sapphire Rapids
// class, weights cold): the 7 x 7 products 0.79-0.90x the time at 1 thread, 0.72-0.93x at 2;
// Next-ViT-S at batch 1 about 1 % faster (in-process A/B).
class NextRowsPrefetch {
 public:
  // Rows [r0, r1) of A, spread over `calls` kernel calls.
  NextRowsPrefetch(const Problem& p, int64_t r0, int64_t r1, int64_t calls)
      : base_(p.A + r0 * p.lda),
        lda_(p.lda),
        lines_per_row_((p.K + 15) / 16 + 1),  // + 1: a row need not start on a line
        total_(std::max<int64_t>(r1 - r0, 0) * lines_per_row_),
        per_call_(ceil_div(total_, std::max<int64_t>(calls, 1))) {}
  // The next call's share: where it starts and how many lines (within one row, and at most one
  // per step of the call's k loop).
  std::pair<const float*, int64_t> next(int64_t kb) {
    if (next_ >= total_) return {nullptr, 0};
    const int64_t row = next_ / lines_per_row_, line = next_ % lines_per_row_;
    const int64_t n = std::min({per_call_, lines_per_row_ - line, kb / 16});
    next_ += n;
    return {base_ + row * lda_ + line * 16, n};
  }

 private:
  const float* base_;
  int64_t lda_, lines_per_row_, total_, per_call_, next_ = 0;
};

// C[m0:m1, n0:n1] on the calling thread, in blocks of rows of A that stay in L2 while every
// group of columns passes down them; the kernel's rows of bt (cols x kc floats) stay in L1
// meanwhile.
void dot_rect(const DotConfig& d, const Problem& p, const float* bt, int64_t ldbt, int64_t m0,
              int64_t m1, int64_t n0, int64_t n1) {
  const int64_t block =
      std::max<int64_t>(1, kDotBlockBytes / (p.K * int64_t(sizeof(float))) / d.rows) * d.rows;
  const int64_t kc = dot_pass_k(d, p.K);
  // Columns in groups of nearly equal width (49 = 10 x 4 + 3 x 3 for 4-wide tiles, not 12 x 4 +
  // 1): a 1-column tile has too few accumulators to hide the FMA latency.
  const int64_t groups = ceil_div(n1 - n0, d.cols);
  auto group_col = [&](int64_t g) { return n0 + (n1 - n0) * g / groups; };
  for (int64_t i0 = m0; i0 < m1; i0 += block) {
    const int64_t i1 = std::min(m1, i0 + block);
    NextRowsPrefetch prefetch(p, i1, std::min(m1, i1 + block),
                              ceil_div(p.K, kc) * groups * ceil_div(i1 - i0, d.rows));
    for (int64_t k0 = 0; k0 < p.K; k0 += kc) {
      const int64_t kb = std::min(kc, p.K - k0);
      const float beta = k0 == 0 ? p.beta : 1.0f;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t j = group_col(g);
        const int c = static_cast<int>(group_col(g + 1) - j);
        for (int64_t i = i0; i < i1; i += d.rows) {
          const int r = static_cast<int>(std::min<int64_t>(d.rows, i1 - i));
          const auto [pf, pf_lines] = prefetch.next(kb);
          d.kernels[(r - 1) * d.cols + c - 1](kb, p.A + i * p.lda + k0, p.lda, bt + j * ldbt + k0,
                                              ldbt, p.C + i * p.ldc + j, p.ldc, p.alpha, beta, pf,
                                              pf_lines);
        }
      }
    }
    p.finish_rows(i0, i1, n0, n1 - n0);  // the block's rows of C, still in L2
  }
}

// The whole product on up to `threads` threads. They split the longer side of C: ranges of
// rows for a narrow C (each thread then reads its own rows of A, the weights), ranges of columns
// when C has fewer rows than columns (each reads its own rows of bt).
void run_dot(const DotConfig& d, const Problem& p, int threads) {
  const float* bt = p.B;
  int64_t ldbt = p.ldb;
  if (!p.trans_b) {
    PackBuffers& buf = thread_buffers();
    // Rows of bt an odd number of cache lines apart. At K = 1024 or 2048 (the NTB's 7 x 7 MLP)
    // rows 4 or 8 KiB apart put the kernel's 7 rows of bt, and the 3 rows of A beside them, in
    // one set of the 8-way L1 at every step of k: the products ran at 1.2-1.4x the time.
    ldbt = panel_stride(p.K, 1);
    float* t = PackBuffers::grow(buf.b, buf.b_size, static_cast<size_t>(p.N * ldbt));
    transpose_b(p, t, ldbt);
    bt = t;
  }
  const double macs = double(p.M) * double(p.N) * double(p.K);
  if (threads <= 1 || macs < kParallelMinMacs) {
    dot_rect(d, p, bt, ldbt, 0, p.M, 0, p.N);
    return;
  }
  const bool split_rows = p.M >= p.N;
  const int64_t side = split_rows ? p.M : p.N, unit = split_rows ? d.rows : d.cols;
  const int64_t units = ceil_div(side, unit);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t lo = std::min(side, units * t / T * unit);
    const int64_t hi = std::min(side, units * (t + 1) / T * unit);
    if (split_rows) {
      dot_rect(d, p, bt, ldbt, lo, hi, 0, p.N);
    } else {
      dot_rect(d, p, bt, ldbt, 0, p.M, lo, hi);
    }
  }
}
#endif

#if NEXTVIT_CPU_X86
// ---- the 48-column path: N = 48 or 49, or 96 to 256 in panels (kernels/cpu/gemm_cols48.h) ------

// The columns of C: `panels` panels of 48 on the 48-column kernels, and `extra` more columns,
// one carried by each of the first `extra` panels (column 48 panels + q by panel q).
struct Cols48Split {
  int64_t panels, extra;
};
Cols48Split cols48_split(int64_t N) {
  return {N / 48, N % 48};
}

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
// with fewer rows than columns keeps the paths below, which can split it by columns.
bool use_cols48(const Problem& p) {
  if (gemm_isa() != GemmIsa::kAvx512 || p.trans_a || p.a_map.on() || p.K < kDotMinK) return false;
  const Cols48Split split = cols48_split(p.N);
  if (split.panels == 1) return split.extra <= 1;
  return p.N <= 256 && split.extra <= split.panels && p.M >= p.N;
}

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

void run_cols48(const Problem& p, int threads) {
  run_cols48(p, threads, [](int64_t, int64_t) {});
}
#endif

// A split of C into a tm x tn grid of rectangles, one per thread.
struct Grid {
  int tm = 1, tn = 1;
  int64_t mp = 1, np = 1;  // panels of rows (MR) and columns (NR) of C
};

// The tm x tn grid for `threads` threads that minimises the slowest thread's cost: its padded
// tile work plus the packing it does (its A rows and B columns, each once per K step; a packed
// float costs about what 16 multiply-adds do).
Grid plan_grid(const Config& cfg, const Problem& p, int threads) {
  Grid g;
  g.mp = ceil_div(p.M, cfg.mr);
  g.np = ceil_div(p.N, cfg.nr);
  double best_cost = -1;
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm != 0) continue;
    const int tn = threads / tm;
    const double rows = double(ceil_div(g.mp, tm) * cfg.mr);
    const double cols = double(ceil_div(g.np, tn) * cfg.nr);
    const double cost = rows * cols + 16.0 * (rows + cols);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      g.tm = tm;
    }
  }
  g.tn = threads / g.tm;
  return g;
}

// Thread t's rectangle C[m0:m1, n0:n1] of the grid: thread (ti, tj) = (t / tn, t % tn) gets
// panels [mp * ti / tm, mp * (ti + 1) / tm) of rows, and likewise of columns.
struct Rect {
  int64_t m0, m1, n0, n1;
};
Rect grid_rect(const Config& cfg, const Problem& p, const Grid& g, int t) {
  const int ti = t / g.tn, tj = t % g.tn;
  return {std::min(p.M, g.mp * ti / g.tm * cfg.mr), std::min(p.M, g.mp * (ti + 1) / g.tm * cfg.mr),
          std::min(p.N, g.np * tj / g.tn * cfg.nr), std::min(p.N, g.np * (tj + 1) / g.tn * cfg.nr)};
}

// The blocked product (M, N, K >= 1) on up to `threads` threads.
void run_blocked(const Config& cfg, const Problem& p, int threads) {
  if (run_serial(p, threads)) {
    gemm_rect(cfg, p, 0, p.M, 0, p.N);
    return;
  }
  const Grid g = plan_grid(cfg, p, threads);
  const int team = g.tm * g.tn;
#pragma omp parallel num_threads(team)
  {
    // Were fewer threads granted than asked for, each would take several rectangles.
    for (int t = omp_get_thread_num(); t < team; t += omp_get_num_threads()) {
      const Rect r = grid_rect(cfg, p, g, t);
      gemm_rect(cfg, p, r.m0, r.m1, r.n0, r.n1);
    }
  }
}

// ---- the transposed path: narrow C, tall A ----------------------------------------------------

// The share of the blocked tiles' lanes that n columns fill (tiles w wide).
inline double lane_fill(int64_t n, int w) {
  return double(n) / double(ceil_div(n, w) * w);
}

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
  const Grid g = plan_grid(cfg, flipped, threads);
  const int team = g.tm * g.tn;
#pragma omp parallel num_threads(team)
  {
    for (int q = omp_get_thread_num(); q < team; q += omp_get_num_threads()) {
      const Rect r = grid_rect(cfg, flipped, g, q);
      gemm_rect(cfg, flipped, r.m0, r.m1, r.n0, r.n1);
      // Rows m, columns n of C^T are columns m, rows n of C.
      if (r.m0 < r.m1 && r.n0 < r.n1) {
        store_transposed(p, t, r.n0, r.n1, r.m0, r.m1);
        p.finish_rows(r.n0, r.n1, r.m0, r.m1 - r.m0);
      }
    }
  }
}

#if NEXTVIT_CPU_X86
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
  return ceil_div(M, kMr512) * panel_stride(K, kMr512);
}

void gemm_rows_b_pack(int64_t M, int64_t K, const float* A, int64_t lda, float* packed) {
  // The same panels as the blocked product, over all of K at once (no K blocks).
  const Problem p{false, false, M, 0, K, 1.0f, A, lda, nullptr, 0, 0.0f, nullptr, 0, {}};
  pack_a<kMr512>(p, 0, M, 0, K, packed);
}

void gemm_rows_b(int64_t M, int64_t K, int64_t n, float alpha, const float* packed,
                 const float* const* rows, const uint32_t* masks, float beta, float* C,
                 int64_t ldc) {
  NV_CHECK(gemm_rows_b_supported(), "gemm_rows_b: needs the AVX-512 micro-kernels");
  NV_CHECK(n >= 1 && n <= kGemmRowsMaxN && M >= 0 && K >= 1,
           "gemm_rows_b: n={} must be in [1, {}], M={} >= 0, K={} >= 1", n, kGemmRowsMaxN, M, K);
  const int64_t ps = panel_stride(K, kMr512);
  for (int64_t i = 0; i < M; i += kMr512) {
    const int m = static_cast<int>(std::min<int64_t>(kMr512, M - i));
    kRowsKernels[m - 1](K, packed + i / kMr512 * ps, rows, masks, C + i * ldc, ldc,
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
