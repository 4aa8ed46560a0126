// The Winograd convolution F(2x2, 3x3) (kernels/cpu/conv_winograd.h).
//
// The algorithm. Cut the output into 2 x 2 tiles; tile (a, b) reads the 4 x 4 input patch d at
// padded rows 2a .. 2a + 3, columns 2b .. 2b + 3. With the transforms
//
//   U = G g G^T    per (output channel, input channel): the 3 x 3 kernel g -> 4 x 4
//   V = B^T d B    per (input channel, tile): the patch -> 4 x 4
//   Y = A^T M A    per (output channel, tile): 4 x 4 -> the 2 x 2 outputs
//
//   G = | 1    0    0  |   B^T = | 1  0 -1  0 |   A^T = | 1  1  1  0 |
//       | 1/2  1/2  1/2|         | 0  1  1  0 |         | 0  1 -1 -1 |
//       | 1/2 -1/2  1/2|         | 0 -1  1  0 |
//       | 0    0    1  |         | 0  1  0 -1 |
//
// the convolution is, for each of the 16 positions p of the 4 x 4 transformed tiles, one matrix
// product over the input channels,
//
//   M[p][co][t] = sum_c U[p][co][c] * V[p][c][t]
//
// 16 multiply-adds per (co, c, tile) where the direct kernel does 36 (4 outputs x 9 taps): 2.25x
// fewer. The transforms are additions (and the weights' halvings), linear in the channels.
//
// How data moves. An item is (image, group, block of tile rows). Its input rows are first copied
// into zero-padded planes split by row and column parity (four phase planes per channel, each
// wq = nt + 1 columns wide), and its tiles are numbered row after row over that width, one junk
// tile per row: element (i, j) of tile t's patch is then phase (i % 2, j % 2) at
// t + (i / 2) wq + j / 2, so a vector of consecutive tiles, across tile rows, loads each of its
// 16 patch elements with one vector load. The input transform writes V[p][c][t] a vector of tiles
// at a time. Then, a block of 8 output channels at a time, the 16 products run on the direct
// convolution's register tiles (kernels/cpu/conv_tiles.h: R channels x up to 3 vectors of tiles,
// the input channels' rows of V at offsets c * ldv) into M[p][r][t], and the output transform
// turns each channel's M into its 2 x 2 outputs in four phase planes, from which each output row
// is interleaved (even and odd columns) and finished by the output pass (bias, BatchNorm affine,
// ReLU, residual) on its way into y. An item's V (16 x 32 channels x ~128 tiles: 256 KiB) stays
// in L2, a block's M (64 KiB) mostly in L1. The 16 positions' planes are laid a page and a cache
// line apart (position_stride). Threads take items as the direct kernel's do: a contiguous range
// each (a band of rows of every group at batch 1), then the other's last items one at a time
// (kernels/cpu/stealing_ranges.h; in Next-ViT-S's batch-1 forward on the 2-core Zen 4 the main
// thread's samples waiting at the end of these regions fell from 0.70 % to 0.25 % of the total).
//
// The weights' transform U[p][co][c]: each thread makes it for the groups its items meet, once per
// call, into a buffer of its own (a copy made by the other core would cross to this one on every
// call).
//
// Sums. Every transform runs the same additions in the same order on both ISA families, and
// the products sum c = 0, 1, ... with one fused multiply-add per step, so AVX-512 and AVX2 give
// the same bits, for any thread count and blocking. They are not the direct kernel's bits: each
// output is a different sum of the same products (rounded differently: measured up to about
// 1e-6 of the largest output on Next-ViT-S's shapes; the tests bound it). set_conv_winograd
// (false) gives the direct kernel's sums back.
#include "kernels/cpu/conv_winograd.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/conv_tiles.h"
#include "kernels/cpu/copy_floats.h"
#include "kernels/cpu/stealing_ranges.h"

namespace nextvit::kernels::cpu {
namespace {

using conv_tiles::Family;
using conv_tiles::kMaxV;

// On unless the environment says NEXTVIT_WINOGRAD=0.
bool enabled_by_environment() {
  const char* env = std::getenv("NEXTVIT_WINOGRAD");
  return env == nullptr || std::strcmp(env, "0") != 0;
}
std::atomic<bool> g_enabled{enabled_by_environment()};

constexpr int64_t kPositions = 16;  // 4 x 4 transformed positions per tile
// Output channels per block of M: one AVX-512 tile of rows, two AVX2 ones. Both families then
// read each vector of V from L2 once per 8 channels; with a block per 4-row AVX2 tile it came
// from L2 twice as often, at twice the bytes per multiply-add (forced AVX2 on a Zen 4 core, the
// stem's 64 -> 32 at 112 x 112 took 1.2x the AVX-512 time, its tiles at ~71 % of the peak
// against 89-96 % with their operands in L1).
constexpr int64_t kBlockChannels = 8;
// Tiles per item (a block of whole tile rows): V and M of 32 channels then take 256 KiB.
constexpr int64_t kItemTiles = 128;
// Output maps narrower than this go to the direct kernel (its padding waste is small there
// too, and a vector of tiles would straddle several short tile rows).
constexpr int64_t kMinWidth = 14;

// Scratch slots (conv_tiles.h): 0 the padded input, 1 V, 2 M, 3 the outputs of one channel (four
// phase planes and a row), 4 the transformed weights.
using conv_tiles::ceil_div;
using conv_tiles::scratch;

struct Plan {
  const Conv2dShape& s;
  const Family& f;
  int64_t cin_g = 0, cout_g = 0, ho = 0, wo = 0;
  int64_t nt = 0;       // tiles per tile row: ceil(wo / 2)
  int64_t th = 0;       // tile rows: ceil(ho / 2)
  int64_t wq = 0;       // columns of a phase plane, and tiles per numbered row: nt + 1
  int64_t trows = 0;    // tile rows per item
  int64_t nblocks = 0;  // items per (image, group)
  int64_t plane = 0;    // floats of a phase plane: trows + 1 rows x wq (+ slack after the last)
  int64_t ldv = 0;      // floats per row of V and M: the item's trows x wq tiles in whole vectors
  // Floats from one position's V (M: a block of 8 channels) to the next's (position_stride).
  int64_t vps = 0, mps = 0;
};

// The 16 positions' planes of V (or M) lie a whole number of 4 KiB pages plus one cache line
// apart: the transforms read or write all 16 at once, and planes a multiple of 4 KiB apart
// (32 channels x 128 tiles: 16 KiB) would all fall into one set of the 8-way L1 and evict each
// other.
int64_t position_stride(int64_t floats) {
  return ceil_div(floats, 1024) * 1024 + 16;
}

// Tile rows per item: about kItemTiles tiles, at least four items per thread when the image
// allows, and with several threads a number of items that divides evenly (as the direct kernel).
void plan_blocks(Plan& p, int threads) {
  p.trows = conv_tiles::rows_per_item(p.th, p.wq, kItemTiles, p.s.batch * p.s.groups, threads);
  p.nblocks = ceil_div(p.th, p.trows);
  p.plane = (p.trows + 1) * p.wq;
  p.ldv = ceil_div(p.trows * p.wq, p.f.lanes) * p.f.lanes;
  p.vps = position_stride(p.cin_g * p.ldv);
  p.mps = position_stride(kBlockChannels * p.ldv);
}

// The group's input rows that the item's tile rows [tr0, tr0 + rows) read (padded rows 2 tr0 ..
// 2 (tr0 + rows) + 1), zero-padded and split into four phase planes per channel: phase (a, b)
// holds the padded elements at rows 2y + a, columns 2x + b, at (y - tr0) * wq + x.
void pad_block(const Plan& p, const float* xg, int64_t tr0, int64_t rows, float* xp) {
  const Conv2dShape& s = p.s;
  std::fill(xp, xp + 4 * p.cin_g * p.plane + p.f.lanes + 1, 0.0f);
  for (int64_t c = 0; c < p.cin_g; ++c) {
    float* xc = xp + 4 * c * p.plane;
    for (int64_t lr = 0; lr < 2 * rows + 2; ++lr) {
      const int64_t ih = 2 * tr0 - s.pad_h + lr;
      if (ih < 0 || ih >= s.in_h) continue;
      const float* src = xg + (c * s.in_h + ih) * s.in_w;
      float* row = xc + lr % 2 * 2 * p.plane + lr / 2 * p.wq;  // phase (lr % 2, 0)
      conv_tiles::split_row2_for(p.f, src, s.in_w, s.pad_w, row, row + p.plane);
    }
  }
}

// ---- the transforms on vectors of tiles (GCC/Clang vector extensions) -------------------------
// Written once for both widths (Vec16 for AVX-512, Vec8 for AVX2) and instantiated below in each
// family's function. The small fixed loops carry `#pragma GCC unroll`: without it GCC left the
// AVX2 form's 4 x 4 loops rolled, copying vectors through the stack (1.5x slower).

typedef float Vec16 __attribute__((vector_size(64)));
typedef float Vec8 __attribute__((vector_size(32)));

// U[p] = (G g G^T)[p] for the kernels g of L consecutive input channels c0 .. c0 + L - 1 of
// output channel co (w + (co * cin_g + c0) * 9: L runs of 9 taps), one channel per lane, stored
// at u + p * ps.
template <class V>
[[gnu::always_inline]] inline void weight_vector(const float* w, float* u, int64_t ps) {
  constexpr int L = sizeof(V) / 4;
  alignas(64) float taps[9][L];  // the L kernels' taps, transposed
#pragma GCC unroll 16
  for (int l = 0; l < L; ++l) {
#pragma GCC unroll 16
    for (int k = 0; k < 9; ++k) taps[k][l] = w[l * 9 + k];
  }
  V g[9];
  std::memcpy(g, taps, sizeof(g));
  V t[4][3];  // G g
  for (int j = 0; j < 3; ++j) {
    t[0][j] = g[j];
    t[1][j] = ((g[j] + g[3 + j]) + g[6 + j]) * 0.5f;
    t[2][j] = ((g[j] - g[3 + j]) + g[6 + j]) * 0.5f;
    t[3][j] = g[6 + j];
  }
#pragma GCC unroll 16
  for (int i = 0; i < 4; ++i) {  // (G g) G^T
    const V r[4] = {t[i][0], ((t[i][0] + t[i][1]) + t[i][2]) * 0.5f,
                    ((t[i][0] - t[i][1]) + t[i][2]) * 0.5f, t[i][2]};
#pragma GCC unroll 16
    for (int j = 0; j < 4; ++j) std::memcpy(u + (i * 4 + j) * ps, &r[j], sizeof(V));
  }
}

// U[p][co][c] of group grp (co, c within the group): whole vectors of input channels, then the
// rest one at a time through a zero-padded copy (the same operations, so the same bits).
template <class V>
[[gnu::always_inline]] inline void weight_transform(const Plan& p, const float* w, int64_t grp,
                                                    float* u) {
  constexpr int64_t L = sizeof(V) / 4;
  const int64_t cin_g = p.cin_g, ps = p.cout_g * cin_g;
  for (int64_t co = 0; co < p.cout_g; ++co) {
    const float* wc = w + (grp * p.cout_g + co) * cin_g * 9;
    int64_t c = 0;
    for (; c + L <= cin_g; c += L) weight_vector<V>(wc + c * 9, u + co * cin_g + c, ps);
    for (; c < cin_g; ++c) {
      float one[9 * L] = {}, out[kPositions * L];
      std::memcpy(one, wc + c * 9, 9 * sizeof(float));
      weight_vector<V>(one, out, L);
      for (int64_t q = 0; q < kPositions; ++q) u[q * ps + co * cin_g + c] = out[q * L];
    }
  }
}

// V[p] for a vector of consecutive tiles t of one channel (xc: its four phase planes, offset to
// the first tile): element (i, j) of tile t's patch is phase (i % 2, j % 2) at t + (i / 2) wq +
// j / 2, so each is one vector load. Stored at v + p * ps.
template <class V>
[[gnu::always_inline]] inline void input_vector(const float* xc, int64_t plane, int64_t wq,
                                                float* v, int64_t ps) {
  V d[4][4];
#pragma GCC unroll 16
  for (int i = 0; i < 4; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < 4; ++j) {
      std::memcpy(&d[i][j], xc + (i % 2 * 2 + j % 2) * plane + i / 2 * wq + j / 2, sizeof(V));
    }
  }
  V r[4][4];  // B^T d
#pragma GCC unroll 16
  for (int j = 0; j < 4; ++j) {
    r[0][j] = d[0][j] - d[2][j];
    r[1][j] = d[1][j] + d[2][j];
    r[2][j] = d[2][j] - d[1][j];
    r[3][j] = d[1][j] - d[3][j];
  }
#pragma GCC unroll 16
  for (int i = 0; i < 4; ++i) {  // (B^T d) B
    const V t[4] = {r[i][0] - r[i][2], r[i][1] + r[i][2], r[i][2] - r[i][1], r[i][1] - r[i][3]};
#pragma GCC unroll 16
    for (int j = 0; j < 4; ++j) std::memcpy(v + (i * 4 + j) * ps, &t[j], sizeof(V));
  }
}

// The 2 x 2 outputs of a vector of consecutive tiles from M[p] at m + p * ps, output (a, b) of
// each tile to y + (a * 2 + b) * ys (four phase planes, in the tiles' numbering).
template <class V>
[[gnu::always_inline]] inline void output_vector(const float* m, int64_t ps, float* y, int64_t ys) {
  V a[4][4];
#pragma GCC unroll 16
  for (int p = 0; p < 16; ++p) std::memcpy(&a[p / 4][p % 4], m + p * ps, sizeof(V));
  V s[2][4];  // A^T M
#pragma GCC unroll 16
  for (int j = 0; j < 4; ++j) {
    s[0][j] = (a[0][j] + a[1][j]) + a[2][j];
    s[1][j] = (a[1][j] - a[2][j]) - a[3][j];
  }
#pragma GCC unroll 16
  for (int i = 0; i < 2; ++i) {  // (A^T M) A
    const V y0 = (s[i][0] + s[i][1]) + s[i][2], y1 = (s[i][1] - s[i][2]) - s[i][3];
    std::memcpy(y + (i * 2) * ys, &y0, sizeof(V));
    std::memcpy(y + (i * 2 + 1) * ys, &y1, sizeof(V));
  }
}

// An output row from its two column phases (n values each, read in whole vectors): row[2x] =
// even[x], row[2x + 1] = odd[x].
template <class V>
[[gnu::always_inline]] inline void interleave_row(const float* even, const float* odd, int64_t n,
                                                  float* row) {
  constexpr int64_t L = sizeof(V) / 4;
  for (int64_t x = 0; x < n; x += L) {
    V e, o, lo, hi;
    std::memcpy(&e, even + x, sizeof(V));
    std::memcpy(&o, odd + x, sizeof(V));
    if constexpr (L == 16) {
      lo = __builtin_shufflevector(e, o, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      hi = __builtin_shufflevector(e, o, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15,
                                   31);
    } else {
      lo = __builtin_shufflevector(e, o, 0, 8, 1, 9, 2, 10, 3, 11);
      hi = __builtin_shufflevector(e, o, 4, 12, 5, 13, 6, 14, 7, 15);
    }
    std::memcpy(row + 2 * x, &lo, sizeof(V));
    std::memcpy(row + 2 * x + L, &hi, sizeof(V));
  }
}

// V of the item: every input channel, a vector of tiles at a time.
template <class V>
[[gnu::always_inline]] inline void input_transform(const Plan& p, const float* xp, int64_t rows,
                                                   float* v) {
  constexpr int64_t L = sizeof(V) / 4;
  const int64_t ps = p.vps, tiles = rows * p.wq;
  for (int64_t c = 0; c < p.cin_g; ++c) {
    for (int64_t t = 0; t < tiles; t += L) {
      input_vector<V>(xp + 4 * c * p.plane + t, p.plane, p.wq, v + c * p.ldv + t, ps);
    }
  }
}

// One output channel's tiles of the item from M (m: its row of position 0; ps: from one
// position to the next) into four phase planes of ldv floats (yq), then its output rows, each
// interleaved from two of them into `row`, through the output pass into y (yc: the channel's
// first output row of the item).
template <class V>
[[gnu::always_inline]] inline void output_transform(const Plan& p, const float* m, int64_t ps,
                                                    int64_t rows, float* yq, float* row,
                                                    const ConvOutputPass& pass, int64_t c,
                                                    float* yc, int64_t out_rows) {
  constexpr int64_t L = sizeof(V) / 4;
  const int64_t tiles = rows * p.wq;
  for (int64_t t = 0; t < tiles; t += L) output_vector<V>(m + t, ps, yq + t, p.ldv);
  for (int64_t r = 0; r < out_rows; ++r) {
    const float* even = yq + (r % 2 * 2) * p.ldv + r / 2 * p.wq;
    interleave_row<V>(even, even + p.ldv, p.nt, row);
    if (pass.needed()) {
      pass.run(c, row, yc + r * p.wo, p.wo);
    } else {
      copy_floats(row, yc + r * p.wo, p.wo);
    }
  }
}

using WeightFn = void (*)(const Plan& p, const float* w, int64_t grp, float* u);
using InputFn = void (*)(const Plan& p, const float* xp, int64_t rows, float* v);
using OutputFn = void (*)(const Plan& p, const float* m, int64_t ps, int64_t rows, float* yq,
                          float* row, const ConvOutputPass& pass, int64_t c, float* yc,
                          int64_t out_rows);

#if NEXTVIT_CPU_X86
__attribute__((target("avx512f"))) void weights_avx512(const Plan& p, const float* w, int64_t grp,
                                                       float* u) {
  weight_transform<Vec16>(p, w, grp, u);
}
__attribute__((target("avx512f"))) void input_avx512(const Plan& p, const float* xp, int64_t rows,
                                                     float* v) {
  input_transform<Vec16>(p, xp, rows, v);
}
__attribute__((target("avx512f"))) void output_avx512(const Plan& p, const float* m, int64_t ps,
                                                      int64_t rows, float* yq, float* row,
                                                      const ConvOutputPass& pass, int64_t c,
                                                      float* yc, int64_t out_rows) {
  output_transform<Vec16>(p, m, ps, rows, yq, row, pass, c, yc, out_rows);
}
void weights_avx2(const Plan& p, const float* w, int64_t grp, float* u) {
  weight_transform<Vec8>(p, w, grp, u);
}
void input_avx2(const Plan& p, const float* xp, int64_t rows, float* v) {
  input_transform<Vec8>(p, xp, rows, v);
}
void output_avx2(const Plan& p, const float* m, int64_t ps, int64_t rows, float* yq, float* row,
                 const ConvOutputPass& pass, int64_t c, float* yc, int64_t out_rows) {
  output_transform<Vec8>(p, m, ps, rows, yq, row, pass, c, yc, out_rows);
}
#endif

struct Transforms {
  WeightFn weights;
  InputFn input;
  OutputFn output;
};

const Transforms& transforms(const Family& f) {
#if NEXTVIT_CPU_X86
  static const Transforms avx512{weights_avx512, input_avx512, output_avx512},
      avx2{weights_avx2, input_avx2, output_avx2};
  return f.lanes == 16 ? avx512 : avx2;
#else
  (void)f;
  static const Transforms none{nullptr, nullptr, nullptr};
  return none;
#endif
}

// The item's group's transformed weights in this thread's copy (u: all groups, 16 x cout_g x
// cin_g floats each), made on the thread's first item of the group in this call (ready: its
// flags). Each thread makes its own rather than sharing one made by all: the copy another core
// wrote would have to cross to this one, on every call.
const float* group_weights(const Plan& p, const float* w, int64_t grp, float* u, uint8_t* ready) {
  float* ug = u + grp * kPositions * p.cout_g * p.cin_g;
  if (!ready[grp]) {
    transforms(p.f).weights(p, w, grp, ug);
    ready[grp] = 1;
  }
  return ug;
}

void run_item(const Plan& p, const float* w, float* u, uint8_t* ready, const int32_t* off,
              const float* x, const ConvOutputPass& pass, float* y, int64_t item) {
  const Conv2dShape& s = p.s;
  const int64_t grp = item % s.groups, blk = item / s.groups % p.nblocks;
  const int64_t n = item / s.groups / p.nblocks;
  const int64_t tr0 = blk * p.trows, rows = std::min(p.th, tr0 + p.trows) - tr0;
  const Transforms& t = transforms(p.f);
  const int64_t lanes = p.f.lanes, cout = s.out_channels;
  const float* ug = group_weights(p, w, grp, u, ready);

  float* xp = scratch(0, 4 * p.cin_g * p.plane + lanes + 1);
  pad_block(p, x + (n * s.in_channels + grp * p.cin_g) * s.in_h * s.in_w, tr0, rows, xp);
  float* v = scratch(1, kPositions * p.vps);
  t.input(p, xp, rows, v);

  // A block of 8 output channels at a time: its 16 products on every vector of the item's tiles
  // into M (16 x 8 rows, 64 KiB at 128 tiles), then its outputs, while M is in L1 / L2.
  float* m = scratch(2, kPositions * p.mps);
  const int64_t nv = ceil_div(rows * p.wq, lanes), out_rows = std::min(p.ho - 2 * tr0, 2 * rows);
  float* yq = scratch(3, 4 * p.ldv + 2 * ceil_div(p.nt, lanes) * lanes);
  float* row = yq + 4 * p.ldv;
  for (int64_t co0 = 0; co0 < p.cout_g; co0 += kBlockChannels) {
    for (int64_t pos = 0; pos < kPositions; ++pos) {
      const float* a = ug + (pos * p.cout_g + co0) * p.cin_g;
      for (int64_t vec = 0; vec < nv; vec += kMaxV) {
        const int64_t k = std::min(kMaxV, nv - vec);
        // The block's channels a tile of rows at a time (AVX2: two), the second tile reading
        // the same vectors of V from L1.
        for (int64_t r0 = 0; r0 < kBlockChannels; r0 += p.f.rows) {
          p.f.tiles[k - 1](p.cin_g, a + r0 * p.cin_g, p.cin_g, v + pos * p.vps + vec * lanes, off,
                           m + pos * p.mps + r0 * p.ldv + vec * lanes, p.ldv);
        }
      }
    }
    for (int64_t r = 0; r < kBlockChannels; ++r) {
      const int64_t c = grp * p.cout_g + co0 + r;
      t.output(p, m + r * p.ldv, p.mps, rows, yq, row, pass, c,
               y + ((n * cout + c) * p.ho + 2 * tr0) * p.wo, out_rows);
    }
  }
}

}  // namespace

bool conv_winograd_applies(const Conv2dShape& s) {
  if (!conv_winograd_available()) return false;
  // A multiple of 8 output channels per group on both families (whole AVX-512 tiles of 8
  // rows, two AVX2 ones of 4), so that both take the same shapes and give the same bits.
  const int64_t cout_g = s.out_channels / s.groups;
  return s.kernel_h == 3 && s.kernel_w == 3 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h <= 2 &&
         s.pad_w <= 2 && cout_g % 8 == 0 && s.out_w() >= kMinWidth && s.out_h() >= 2 &&
         s.in_channels / s.groups * (s.in_h + 4) * (s.in_w + 4) < (1 << 30);
}

void conv_winograd_forward(const Conv2dShape& s, const float* x, const float* w,
                           const ConvOutputPass& pass, float* y) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  Plan p{s, *conv_tiles::family()};
  p.cin_g = s.in_channels / s.groups;
  p.cout_g = s.out_channels / s.groups;
  p.ho = s.out_h();
  p.wo = s.out_w();
  p.nt = ceil_div(p.wo, 2);
  p.th = ceil_div(p.ho, 2);
  p.wq = p.nt + 1;
  plan_blocks(p, threads);
  std::vector<int32_t> off(static_cast<size_t>(p.cin_g));
  for (int64_t c = 0; c < p.cin_g; ++c) off[c] = static_cast<int32_t>(c * p.ldv);
  const int64_t items = s.batch * s.groups * p.nblocks;
  // Each thread's transformed weights (scratch slot 4, kept from call to call; every element is
  // written before it is read) and its flags of the groups made in this call.
  const int64_t u_floats = kPositions * s.out_channels * p.cin_g;
  std::vector<uint8_t> ready(static_cast<size_t>(threads * s.groups), 0);
  if (threads > 1 && items >= threads) {
    parallel_for_stealing(items, threads, 1, [&](int t, int64_t item) {
      run_item(p, w, scratch(4, u_floats), ready.data() + t * s.groups, off.data(), x, pass, y,
               item);
    });
  } else {
    for (int64_t item = 0; item < items; ++item)
      run_item(p, w, scratch(4, u_floats), ready.data(), off.data(), x, pass, y, item);
  }
}

bool set_conv_winograd(bool enabled) {
  return g_enabled.exchange(enabled);
}

bool conv_winograd_available() {
  return g_enabled.load(std::memory_order_relaxed) && conv_tiles::family() != nullptr;
}

}  // namespace nextvit::kernels::cpu
