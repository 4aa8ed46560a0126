// The implicit-GEMM forward (kernels/cpu/conv_implicit.h), taken by kernels/cpu/conv2d.cpp
// before its im2col paths.
#include "kernels/cpu/conv_implicit.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/gemm.h"

namespace nextvit::kernels::cpu::conv_detail {

// ---- implicit GEMM: stride 1, wide output rows ----------------------------------------------
// For a stride-1 convolution, row k = (c, i, j) of col restricted to one output row oh and the
// columns [ow0, ow0 + 32) is a run of input row ih = oh + i - ph of channel c, starting at
// column ow0 + j - pw: it can be read where it lies. gemm_rows_b takes one pointer (and a lane
// mask for the padding) per k, so the forward needs no im2col copy at all: per (image, group)
// the weights are packed once, then each 32-wide piece of an output row is one call.

// Output rows at least this wide (a 28-wide row fills 28 of the 32 lanes) and col heights up
// to this (one packed weight panel of 14 x kg floats stays in L1) take the implicit path.
constexpr int64_t kImplicitMinWidth = 28, kImplicitMaxK = 1152;
// Kernel widths the implicit path handles (a per-column mask table lives on the stack).
constexpr int64_t kMaxKernelW = 16;

bool use_implicit(const Geometry& g) {
  const Conv2dShape& s = g.s;
  return !g.pointwise && s.stride_h == 1 && s.stride_w == 1 && g.wo >= kImplicitMinWidth &&
         g.kg <= kImplicitMaxK && s.kernel_w <= kMaxKernelW && gemm_rows_b_supported();
}

// Bits [lo, hi) of a 32-bit lane mask (0 when hi <= lo).
inline uint32_t lane_bits(int64_t lo, int64_t hi) {
  if (hi <= lo) return 0;
  const uint32_t below_hi = hi >= 32 ? ~0u : (1u << hi) - 1;
  return below_hi & ~((1u << lo) - 1);
}

void forward_implicit(const Geometry& g, const float* x, const float* w, const ConvOutputPass& pass,
                      float* y) {
  const Conv2dShape& s = g.s;
  const int64_t G = s.groups, N = s.batch, kh = s.kernel_h, kw = s.kernel_w;
  const int threads = available_threads();
  // Items: (image, group, block of output rows), at least four per thread when possible.
  const int64_t blocks = std::clamp<int64_t>((4 * threads + N * G - 1) / (N * G), 1, g.ho);
  const int64_t rows_per = (g.ho + blocks - 1) / blocks, nblocks = (g.ho + rows_per - 1) / rows_per;
  const int64_t items = N * G * nblocks;
  // Rows of B in the padding are never read (mask 0), but get a valid address anyway.
  static const float kZeroRow[kGemmRowsMaxN] = {};
  for_items(items, threads > 1 && items >= threads, [&](int64_t item) {
    const int64_t blk = item % nblocks, grp = item / nblocks % G, n = item / nblocks / G;
    float* packed = scratch(0, gemm_rows_b_packed_floats(g.cout_g, g.kg));
    gemm_rows_b_pack(g.cout_g, g.kg, w + grp * g.cout_g * g.kg, g.kg, packed);
    thread_local std::vector<const float*> rows;
    thread_local std::vector<uint32_t> masks;
    rows.resize(static_cast<size_t>(g.kg));
    masks.resize(static_cast<size_t>(g.kg));
    const float* xg = x + (n * s.in_channels + grp * g.cin_g) * g.hw;
    float* yg = y + (n * s.out_channels + grp * g.cout_g) * g.p;
    const int64_t oh0 = blk * rows_per, oh1 = std::min(g.ho, oh0 + rows_per);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      for (int64_t ow0 = 0; ow0 < g.wo; ow0 += kGemmRowsMaxN) {
        const int64_t cols = std::min(kGemmRowsMaxN, g.wo - ow0);
        // Lanes of kernel column j inside the image: the same for every channel and kernel row.
        uint32_t col_mask[kMaxKernelW];
        for (int64_t j = 0; j < kw; ++j) {
          const int64_t start = ow0 + j - s.pad_w;  // input column read by lane 0
          col_mask[j] = lane_bits(std::max<int64_t>(0, -start), std::min(cols, s.in_w - start));
        }
        int64_t k = 0;
        for (int64_t c = 0; c < g.cin_g; ++c) {
          for (int64_t i = 0; i < kh; ++i) {
            const int64_t ih = oh + i - s.pad_h;
            const bool inside = ih >= 0 && ih < s.in_h;
            // Address of input column 0 of row ih, as an integer: lane 0 of a row may lie left
            // of it (then masked off), and that address must not be formed as a pointer.
            const uintptr_t row = reinterpret_cast<uintptr_t>(xg + c * g.hw) +
                                  static_cast<uintptr_t>(ih * s.in_w * int64_t(sizeof(float)));
            for (int64_t j = 0; j < kw; ++j, ++k) {
              const uint32_t m = inside ? col_mask[j] : 0u;
              masks[k] = m;
              rows[k] = m == 0 ? kZeroRow
                               : reinterpret_cast<const float*>(
                                     row + static_cast<uintptr_t>((ow0 + j - s.pad_w) *
                                                                  int64_t(sizeof(float))));
            }
          }
        }
        gemm_rows_b(g.cout_g, g.kg, cols, 1.0f, packed, rows.data(), masks.data(), 0.0f,
                    yg + oh * g.wo + ow0, g.p);
      }
    }
    if (pass.needed()) {
      for (int64_t co = 0; co < g.cout_g; ++co) {
        float* run = yg + co * g.p + oh0 * g.wo;
        pass.run(grp * g.cout_g + co, run, run, (oh1 - oh0) * g.wo);
      }
    }
  });
}

}  // namespace nextvit::kernels::cpu::conv_detail
