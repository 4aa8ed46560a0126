// The direct forward convolution for small groups (kernels/cpu/conv_direct.h): stride 1 or 2, a
// multiple of 8 output channels per group, at most 64 of them (AVX-512; AVX2 at stride 2) or 32
// (AVX2 at stride 1).
//
// How data moves. An item is (image, group, block of output rows [oh0, oh1)). The input rows
// that block reads, of the group's cin_g channels, are first copied into zero-padded planes
// xp[c] of Hb = rows + kh - 1 rows by Wp = W + 2 pw columns. With stride 1, output (r, ow) of
// the block reads xp[c][(r + i) * Wp + ow + j] for kernel offset (i, j). Numbering the outputs
// over padded rows, q = r * Wp + ow, that is xp[c][q + off[k]] with off[k] = c * plane +
// i * Wp + j for k = (c, i, j): for every k a contiguous run of xp, whatever rows it crosses.
// The block is then one matrix product,
//
//   out[co][q] = sum_k w_g[co][k] * xp[off[k] + q]
//
// over q in [0, (rows - 1) * Wp + Wo), of which the columns Wo..Wp-1 of each row are never
// kept (they straddle a row end): 2 of every 58 at 56 x 56, 2 of 9 at 7 x 7 - against the 14-
// row GEMM tile's 32 of 42 rows used on 32 output channels, and no im2col.
//
// Stride 2 (the stem's 64 -> 64 at 112 x 112) reads every other column and row, which would
// break the runs. The padded rows are therefore split by phase when copied: phase (a, b) of a
// channel holds the padded elements at rows 2y + a, columns 2x + b, in a plane of Wq = Wp / 2
// (rounded up) columns. Output (r, ow) reads padded (2r + i, 2ow + j) = phase (i % 2, j % 2)
// at (r + i / 2, ow + j / 2): with q = r * Wq + ow, again xp[off[k] + q] for every k, and the
// same tiles run on it. (Stride s in general: s x s phases; only 1 and 2 are taken.)
//
// The tile: R output channels x V vectors of consecutive q, R*V accumulators. Per k, V vectors
// are loaded from xp and R weights broadcast from w itself (R rows of stride kg, each walked in
// order: no packing, which at 7 x 7 and batch 1 would be a pass over all the weights for 49
// outputs per channel). Output channel tiles are the outer loop, so their R x kg weights stay
// in L1 while q sweeps the block (measured against position tiles outer: no difference on
// AVX-512, within the noise on AVX2). The tile goes to a staging buffer (cout_g rows over the
// block's q), from which each row's kept columns are copied into y through the output pass (bias,
// BatchNorm affine, ReLU).
//
// Threads: each thread takes a contiguous range of items, numbered group fastest, then block of
// rows, then image (and, done with it, the last items of the other's range, one at a time:
// kernels/cpu/stealing_ranges.h): at batch 1 thread t computes one band of output rows for every
// group, the same pixels the 1x1 convolutions around it give that thread (the GEMM splits the
// columns of C, the pixels, into contiguous ranges), so that each core reads mostly rows it wrote
// itself and which are still in its own L2. Measured on the 2-core Xeon against items dealt
// round-robin (each core then read half of its input from the other core's cache): Next-ViT-S at
// batch 1 0.989-0.991x the time (in-process A/B, three runs of 20 rounds). Every output is summed
// by one item in the order k = 0, 1, ... whatever the blocking, so results are the same bits for
// any thread count.
#include "kernels/cpu/conv_direct.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "kernels/cpu/conv_tiles.h"
#include "kernels/cpu/copy_floats.h"
#include "kernels/cpu/stealing_ranges.h"

namespace nextvit::kernels::cpu {
namespace {

std::atomic<bool> g_enabled{true};

// Groups with more inputs than this go to the GEMM paths (a tile's R rows of weights should
// stay in L1).
constexpr int64_t kMaxKg = 1152;
// Stride 2 takes groups with at least this many steps of k (see conv_direct_applies).
constexpr int64_t kMinKgStride2 = 64;
// Output maps of at most this many positions go to the GEMM paths, which put the columns of many
// small images side by side: an item here would fill a third of a vector at 2 x 2. Measured (2
// threads, 3x3 grouped, batch 128): at 2 x 2 the GEMM paths take 0.48-0.54x the time, at 3 x 3
// 0.8-0.9x, at 4 x 4 0.76-1.0x; from 5 x 5 on this kernel is faster. A rule on the map alone, not
// the batch, so that an image gets the same bits alone as inside a batch (data-parallel training
// relies on it).
constexpr int64_t kMaxSmallMap = 16;
// Output positions (padded numbering) per item: the staging buffer of 32 channels stays within
// 64 KiB, the padded input of a 56-wide block in L2.
constexpr int64_t kItemPositions = 512;
// Floats past the last padded plane that the last vector of a row may read (zeroed).
constexpr int64_t kSlack = 32;

// The tiles of the current GEMM ISA family (kernels/cpu/conv_tiles.h), taking groups of up to
// 8 x rows output channels at stride 1 (64 on AVX-512, 32 on AVX2). Larger groups go to the GEMM
// paths, whose tiles then waste few rows: measured (one thread, Next-ViT's stem 32 -> 64 at
// 112 x 112, 64 per group), direct was 1.18x faster on AVX-512 but 6% slower on AVX2, whose
// 6 x 16 GEMM tile beats the 4 x 24 direct tile's 7 loads per 12 FMAs once the rows are used.
// At stride 2 both families take up to 64: there the GEMM path first copies every patch into
// im2col columns (2.25 floats written and read per input float at 3x3). Measured (AVX2 forced
// on a Zen 4 core, the stem's 64 -> 64 at 112 x 112): 3.21 ms through im2col and the GEMM (61 %
// of the peak), 2.62 ms here (75 %); two threads 1.62 -> 1.32 ms.
using conv_tiles::Family;
using conv_tiles::kMaxV;
constexpr int64_t kMaxCoutStride2 = 64;
int64_t max_cout(const Family& f, int64_t stride) {
  return stride == 2 ? kMaxCoutStride2 : 8 * f.rows;
}

// Scratch slot 0 holds the padded input, slot 1 the staging.
using conv_tiles::ceil_div;
using conv_tiles::scratch;

// Sizes shared by every item of one call. A channel of the padded block is st x st phase
// planes of hq rows by wq columns (at stride 1 one plane of rows + kh - 1 rows by the padded
// width).
struct Plan {
  const Conv2dShape& s;
  const Family& f;
  int64_t cin_g, cout_g, kg, ho, wo, st, wq, rows_per, nblocks, hq, plane, chan;
};

// Rows per block: about kItemPositions outputs per item (a quarter at stride 2, whose outputs
// read four times the input), at least four items per thread when the image allows, and, with
// several threads, a number of items that divides evenly.
void plan_blocks(Plan& p, int threads) {
  p.rows_per = conv_tiles::rows_per_item(p.ho, p.wq, kItemPositions / (p.st * p.st),
                                         p.s.batch * p.s.groups, threads);
  p.nblocks = ceil_div(p.ho, p.rows_per);
  p.hq = p.rows_per + (p.s.kernel_h - 1) / p.st;
  p.plane = p.hq * p.wq;
  p.chan = p.st * p.st * p.plane;
}

// The group's input rows that output rows [oh0, oh0 + rows) read, zero-padded and, at stride
// 2, split into phases (see top).
void pad_block(const Plan& p, const float* xg, int64_t oh0, float* xp) {
  const Conv2dShape& s = p.s;
  std::fill(xp, xp + p.cin_g * p.chan + kSlack, 0.0f);
  for (int64_t c = 0; c < p.cin_g; ++c) {
    float* xc = xp + c * p.chan;
    for (int64_t lr = 0; lr < p.hq * p.st; ++lr) {  // padded rows of the block
      const int64_t ih = oh0 * p.st - s.pad_h + lr;
      if (ih < 0 || ih >= s.in_h) continue;
      const float* src = xg + (c * s.in_h + ih) * s.in_w;
      float* row = xc + lr % p.st * p.st * p.plane + lr / p.st * p.wq;  // phase (lr % st, 0)
      if (p.st == 1) {
        copy_floats(src, row + s.pad_w, s.in_w);
        continue;
      }
      conv_tiles::split_row2_for(p.f, src, s.in_w, s.pad_w, row, row + p.plane);
    }
  }
}

void run_item(const Plan& p, const int32_t* off, const float* x, const float* w,
              const ConvOutputPass& pass, float* y, int64_t item) {
  const Conv2dShape& s = p.s;
  const int64_t grp = item % s.groups, blk = item / s.groups % p.nblocks;
  const int64_t n = item / s.groups / p.nblocks;
  const int64_t oh0 = blk * p.rows_per, rows = std::min(p.ho, oh0 + p.rows_per) - oh0;
  float* xp = scratch(0, p.cin_g * p.chan + kSlack);
  pad_block(p, x + (n * s.in_channels + grp * p.cin_g) * s.in_h * s.in_w, oh0, xp);
  // Vectors of q covering [0, (rows - 1) * Wq + Wo); the staging rows hold all their lanes.
  const int64_t nv = ceil_div((rows - 1) * p.wq + p.wo, p.f.lanes), ldc = nv * p.f.lanes;
  float* out = scratch(1, p.cout_g * ldc);
  for (int64_t co = 0; co < p.cout_g; co += p.f.rows) {
    const float* a = w + (grp * p.cout_g + co) * p.kg;
    for (int64_t v = 0; v < nv; v += kMaxV) {
      const int64_t t = std::min(kMaxV, nv - v);
      p.f.tiles[t - 1](p.kg, a, p.kg, xp + v * p.f.lanes, off, out + co * ldc + v * p.f.lanes, ldc);
    }
  }
  for (int64_t co = 0; co < p.cout_g; ++co) {
    const int64_t c = grp * p.cout_g + co;
    float* yc = y + ((n * s.out_channels + c) * p.ho + oh0) * p.wo;
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = out + co * ldc + r * p.wq;
      if (pass.needed()) {
        pass.run(c, src, yc + r * p.wo, p.wo);
      } else {
        copy_floats(src, yc + r * p.wo, p.wo);
      }
    }
  }
}

}  // namespace

bool conv_direct_applies(const Conv2dShape& s) {
  const Family* f = conv_tiles::family();
  if (!g_enabled.load(std::memory_order_relaxed) || f == nullptr) return false;
  const int64_t cin_g = s.in_channels / s.groups, cout_g = s.out_channels / s.groups;
  const int64_t kg = cin_g * s.kernel_h * s.kernel_w;
  const int64_t padded = (s.in_h + 2 * s.pad_h) * (s.in_w + 2 * s.pad_w);
  // Stride 2 with few steps of k (the stem's 3 -> 64 at 224 x 224: 27) stays with im2col, which
  // measured faster there: each tile's stores would weigh as much as its multiply-adds.
  const bool stride_ok =
      s.stride_h == s.stride_w && (s.stride_h == 1 || (s.stride_h == 2 && kg >= kMinKgStride2));
  return stride_ok && !s.pointwise() && cout_g % 8 == 0 && cout_g <= max_cout(*f, s.stride_h) &&
         kg <= kMaxKg && s.out_h() >= 1 && s.out_w() >= 1 && s.out_h() * s.out_w() > kMaxSmallMap &&
         cin_g * padded < (int64_t{1} << 30);
}

void conv_direct_forward(const Conv2dShape& s, const float* x, const float* w,
                         const ConvOutputPass& pass, float* y) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t cin_g = s.in_channels / s.groups, st = s.stride_h, wp = s.in_w + 2 * s.pad_w;
  Plan p{s,
         *conv_tiles::family(),
         cin_g,
         s.out_channels / s.groups,
         cin_g * s.kernel_h * s.kernel_w,
         s.out_h(),
         s.out_w(),
         st,
         ceil_div(wp, st),
         0,
         0,
         0,
         0,
         0};
  plan_blocks(p, threads);
  // off[k] for k = (c, i, j): phase (i % st, j % st) of channel c, row i / st, column j / st.
  std::vector<int32_t> off(static_cast<size_t>(p.kg));
  for (int64_t k = 0; k < p.kg; ++k) {
    const int64_t c = k / (s.kernel_h * s.kernel_w), i = k / s.kernel_w % s.kernel_h;
    const int64_t j = k % s.kernel_w;
    off[k] = static_cast<int32_t>(c * p.chan + (i % st * st + j % st) * p.plane + i / st * p.wq +
                                  j / st);
  }
  const int64_t items = s.batch * s.groups * p.nblocks;
  if (threads > 1 && items >= threads) {
    parallel_for_stealing(items, threads, 1,
                          [&](int, int64_t item) { run_item(p, off.data(), x, w, pass, y, item); });
  } else {
    for (int64_t item = 0; item < items; ++item) run_item(p, off.data(), x, w, pass, y, item);
  }
}

bool set_conv_direct(bool enabled) {
  return g_enabled.exchange(enabled);
}

}  // namespace nextvit::kernels::cpu
