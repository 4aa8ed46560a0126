#pragma once
// The GEMM's packers (kernels/cpu/gemm.cpp, "How data moves"): they copy blocks of op(A) and op(B)
// into the panels the micro-kernels stream, whatever the transposes, leading dimensions, blocked
// layouts (GemmColumnBlocks, GemmKBlocks) and row maps (GemmRowAffine) of the caller.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/copy_floats.h"
#include "kernels/cpu/gemm_problem.h"
#include "kernels/cpu/isa.h"
#if NEXTVIT_CPU_X86
#include <immintrin.h>
#endif

namespace nextvit::kernels::cpu::gemm_detail {

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

}  // namespace nextvit::kernels::cpu::gemm_detail
