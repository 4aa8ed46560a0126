#pragma once
// The index math and per-thread steps of the hand-written grouped 3x3 convolution
// (kernels/cuda/grouped_conv3x3.cu), as __host__ __device__ functions. The CUDA kernels are
// thin: they call these steps in order with __syncthreads() between them. The test
// tests/test_cuda_emulation.cpp calls the very same steps on the host, for every block and
// every thread in turn, so the tiling, the shared-memory layouts, the zero padding and the
// store masks are checked against the CPU convolution on a machine without a GPU.
//
// Scope: kernel 3x3, stride 1, padding 1, C = in/groups = out/groups in {16, 32}: MHCA's
// grouped convolution (Next-ViT: C = 32, reduced configurations: C = 16). All buffers NCHW f32:
//   x, y  (N, G*C, H, W)       w  (G*C, C, 3, 3)       dw partials  (G, blocks, C, C, 3, 3)
//
// ---- forward (also backward-data) --------------------------------------------------------------
// One block per (output tile, group, image). The tile is tile_h rows x tile_w columns of
// output; a block computes all C output channels of its group for that tile. Thread t owns
//   output channels  cog * 8 .. cog * 8 + 7           (cog = t / strips; 8 FMA chains each)
//   output pixels    row, col + SW * i for i < 4        (s = t % strips = row * SW + col)
// i.e. 32 accumulators. Its four pixels are interleaved SW apart rather than adjacent, so that
// for a fixed i, 32 consecutive threads read 32 consecutive shared-memory words (see
// row_stride), which is free of bank conflicts.
// The input channels are walked in chunks of 8: the chunk's input tile, with its 1-pixel halo,
// and the chunk's 8 x 9 x C weights are staged in shared memory; per input channel and tap a
// thread then does 8 x 4 FMAs for 2 weight loads (8 consecutive floats, 16-byte aligned,
// identical across the warp: broadcast) and 4 input loads. That is 288 FMAs for 54 loads per
// input channel, enough to keep the FMA pipes, not shared memory, the bottleneck.
//
// The backward-data pass is the same computation with the roles of the channels swapped and
// the kernel flipped: dx[ci](h, w) = sum_{co, a, b} w[co, ci, 2 - a, 2 - b] dy[co](h + a - 1,
// w + b - 1). Only the weight staging differs (FlipWeights).
//
// ---- backward-weight ---------------------------------------------------------------------------
// dw[co, ci, k] = sum over images and pixels p of dy[co](p) * x[ci](p + tap k): a reduction over
// N*H*W for each of the 9*C*C weights of a group. Block b of group g takes the work items
// (image, tile of at most 8 x 8 pixels) b, b + blocks, b + 2 * blocks, ... and keeps the
// partial sums of ALL the group's weights in registers: thread t owns
//   output channels  a * CO_T .. + CO_T - 1 ,  input channels  b * 2 .. b * 2 + 1 ,  all 9 taps
// (CO_T = 4 for C = 32: 72 accumulators, 128 threads; CO_T = 2 for C = 16: 36, 64 threads).
// For each item the x tile (C channels + halo) and the dy tile (C channels) are staged; every
// thread walks all pixels of the tile in segments of 4 adjacent pixels: 4 dy values per output
// channel and 6 x values per (input channel, kernel row) feed CO_T * 2 * 9 * 4 FMAs (288 for
// C = 32, from 52 loads). All lanes of a warp read the same pixel of different channel planes;
// the planes' strides are odd, so the reads spread over distinct banks (or broadcast).
// Each block finally writes its partial weights; a second kernel sums the blocks' partials in a
// fixed order (deterministic, no atomics).
#include <cstdint>

#include "kernels/cuda/hd.h"

namespace nextvit::kernels::cuda::gconv {

constexpr int kCoPerThread = 8;  // forward: output channels per thread
constexpr int kPxPerThread = 4;  // forward: output pixels per thread
constexpr int kCiChunk = 8;      // forward: input channels staged per step
constexpr int kMaxThreads = 256;

// Floats per staged weight row (one input channel and tap, all C output channels): C + 4.
// The 4 extra floats keep rows 16-byte aligned for the vector loads and spread the staging
// stores, which write down a column (fixed output channel, consecutive rows), over 8 banks
// instead of 1.
template <int C>
constexpr int weight_row() {
  return C + 4;
}
// Floats of staged weights per chunk, placed first in shared memory (16-byte aligned).
template <int C>
constexpr int weight_chunk_floats() {
  return kCiChunk * 9 * weight_row<C>();
}

NV_HD int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

// ---- forward tiling ----------------------------------------------------------------------------

struct FwdTiling {
  int C = 0, groups = 0, H = 0, W = 0;
  int strips_per_row = 0;  // SW: threads per tile row (each owns 4 columns)
  int tile_w = 0;          // 4 * SW output columns
  int tile_h = 0;          // output rows
  int tiles_x = 0, tiles_y = 0;
  int threads = 0;        // (C / 8) * tile_h * SW
  int row_stride = 0;     // floats per staged input row: >= tile_w + 2 and == SW (mod 32)
  int plane = 0;          // floats per staged input channel: (tile_h + 2) * row_stride
  int input_floats = 0;   // kCiChunk * plane (a multiple of 4: the weights follow, aligned)
  int weight_floats = 0;  // weight_chunk_floats<C>()
  int smem_bytes() const { return (input_floats + weight_floats) * 4; }
  int tiles() const { return tiles_x * tiles_y; }
};

// Tile shapes for an H x W image. Columns: tiles at most 32 wide, as few as possible, of equal
// width rounded up to 4 (56 -> 2 x 28, 28 -> 28, 14 -> 16, 7 -> 8). Rows: as many as keep the
// block at <= 256 threads and <= 32 rows, split evenly (56 -> 7 x 8, 28 -> 4 x 7, 14 -> 14).
inline FwdTiling fwd_tiling(int C, int groups, int H, int W) {
  FwdTiling t;
  t.C = C;
  t.groups = groups;
  t.H = H;
  t.W = W;
  const int across = ceil_div(W, 32);
  t.strips_per_row = ceil_div(ceil_div(W, across), kPxPerThread);
  t.tile_w = kPxPerThread * t.strips_per_row;
  t.tiles_x = ceil_div(W, t.tile_w);
  const int co_groups = C / kCoPerThread;
  int max_rows = kMaxThreads / (co_groups * t.strips_per_row);
  max_rows = max_rows < 1 ? 1 : (max_rows > 32 ? 32 : max_rows);
  t.tiles_y = ceil_div(H, max_rows);
  t.tile_h = ceil_div(H, t.tiles_y);
  t.tiles_y = ceil_div(H, t.tile_h);
  t.threads = co_groups * t.tile_h * t.strips_per_row;
  // Thread s = row * SW + col reads word row * row_stride + col + const; with row_stride == SW
  // (mod 32) that is word s + const (mod 32): consecutive threads, consecutive banks.
  const int need = t.tile_w + 2;
  t.row_stride = t.strips_per_row + 32 * ceil_div(need - t.strips_per_row, 32);
  t.plane = (t.tile_h + 2) * t.row_stride;
  t.input_floats = ceil_div(kCiChunk * t.plane, 4) * 4;
  t.weight_floats = C == 32 ? weight_chunk_floats<32>() : weight_chunk_floats<16>();
  return t;
}

struct FwdThread {
  int cog, row, col;  // output channels cog*8.., tile row, first tile column
};

NV_HD FwdThread fwd_thread(const FwdTiling& t, int tid) {
  const int strips = t.tile_h * t.strips_per_row;
  const int s = tid % strips;
  return {tid / strips, s / t.strips_per_row, s % t.strips_per_row};
}

// Stages input channels [ci0, ci0 + 8) of the block's tile (with halo, zero outside the image)
// into in_s (8 planes of (tile_h + 2) x row_stride), and the matching weights into w_s laid out
// [ci][tap][co] (rows of weight_row<C>() floats) so that a thread's 8 output channels are 8
// consecutive, 16-byte aligned floats.
//   x: (N, groups*C, H, W), the conv input (backward-data: dy)
//   w: (groups*C, C, 3, 3), the conv weight as stored
// FlipWeights (backward-data): the staged weight for (output o, input i, tap k) is
// w[i, o, 8 - k] of the same group.
template <int C, bool FlipWeights>
NV_HD void fwd_stage(const FwdTiling& t, int n, int g, int tile, int ci0, const float* x,
                     const float* w, float* in_s, float* w_s, int tid) {
  const int tile_x = tile % t.tiles_x, tile_y = tile / t.tiles_x;
  const int h0 = tile_y * t.tile_h - 1, w0 = tile_x * t.tile_w - 1;  // input origin (halo)
  const int rows = t.tile_h + 2, cols = t.tile_w + 2;
  const int64_t hw = int64_t(t.H) * t.W;
  const float* xg = x + (int64_t(n) * t.groups * C + int64_t(g) * C + ci0) * hw;
  // Consecutive threads take consecutive columns: coalesced reads of each input row.
  for (int idx = tid; idx < kCiChunk * rows * cols; idx += t.threads) {
    const int ci = idx / (rows * cols), rc = idx % (rows * cols);
    const int r = rc / cols, c = rc % cols;
    const int h = h0 + r, wc = w0 + c;
    const bool inside = h >= 0 && h < t.H && wc >= 0 && wc < t.W;
    in_s[ci * t.plane + r * t.row_stride + c] = inside ? xg[ci * hw + h * t.W + wc] : 0.0f;
  }
  // Weights: idx walks the global layout, so a warp reads consecutive floats: forward, the
  // chunk's 8 x 9 taps of one output channel are contiguous (w[co][ci0..ci0+7][taps]);
  // backward-data, the C x 9 taps of one original output channel i are (w[ci0 + i][o][taps]).
  const float* wg = w + int64_t(g) * C * C * 9;
  constexpr int kRow = weight_row<C>();
  for (int idx = tid; idx < kCiChunk * 9 * C; idx += t.threads) {
    if (FlipWeights) {
      // staged (input i, tap 8 - k, output o) = w[ci0 + i][o][k]
      const int i = idx / (9 * C), o = idx / 9 % C, k = idx % 9;
      w_s[(i * 9 + 8 - k) * kRow + o] = wg[(ci0 + i) * C * 9 + idx % (9 * C)];
    } else {
      // staged (input ci, tap k, output co) = w[co][ci0 + ci][k]
      const int co = idx / (kCiChunk * 9), r = idx % (kCiChunk * 9);  // r = ci * 9 + k
      w_s[r * kRow + co] = wg[co * C * 9 + ci0 * 9 + r];
    }
  }
}

// Adds the staged chunk's contribution to the thread's 8 x 4 accumulators.
template <int C>
NV_HD void fwd_accumulate(const FwdTiling& t, const float* in_s, const float* w_s, int tid,
                          float (&acc)[kCoPerThread][kPxPerThread]) {
  const FwdThread th = fwd_thread(t, tid);
  const int sw = t.strips_per_row;
  NV_NO_UNROLL
  for (int ci = 0; ci < kCiChunk; ++ci) {
    const float* in_c = in_s + ci * t.plane + th.row * t.row_stride + th.col;
    const float* w_c = w_s + ci * 9 * weight_row<C>() + th.cog * kCoPerThread;
    NV_UNROLL
    for (int kh = 0; kh < 3; ++kh) {
      NV_UNROLL
      for (int kw = 0; kw < 3; ++kw) {
        float wv[kCoPerThread];
        NV_UNROLL
        for (int o = 0; o < kCoPerThread; ++o) wv[o] = w_c[(kh * 3 + kw) * weight_row<C>() + o];
        NV_UNROLL
        for (int i = 0; i < kPxPerThread; ++i) {
          const float v = in_c[kh * t.row_stride + i * sw + kw];
          NV_UNROLL
          for (int o = 0; o < kCoPerThread; ++o) acc[o][i] += wv[o] * v;
        }
      }
    }
  }
}

// Writes the thread's outputs that fall inside the image: y (N, groups*C, H, W).
template <int C>
NV_HD void fwd_store(const FwdTiling& t, int n, int g, int tile, int tid,
                     const float (&acc)[kCoPerThread][kPxPerThread], float* y) {
  const FwdThread th = fwd_thread(t, tid);
  const int tile_x = tile % t.tiles_x, tile_y = tile / t.tiles_x;
  const int h = tile_y * t.tile_h + th.row;
  if (h >= t.H) return;
  const int64_t hw = int64_t(t.H) * t.W;
  float* yg = y + (int64_t(n) * t.groups * C + int64_t(g) * C + th.cog * kCoPerThread) * hw +
              int64_t(h) * t.W;
  NV_UNROLL
  for (int i = 0; i < kPxPerThread; ++i) {
    const int wc = tile_x * t.tile_w + th.col + i * t.strips_per_row;
    if (wc >= t.W) continue;
    NV_UNROLL
    for (int o = 0; o < kCoPerThread; ++o) yg[o * hw + wc] = acc[o][i];
  }
}

// ---- backward-weight tiling --------------------------------------------------------------------

template <int C>
struct WgtShape {
  static constexpr int kCoT = C == 32 ? 4 : 2;  // output channels per thread
  static constexpr int kCiT = 2;                // input channels per thread
  static constexpr int kCoGroups = C / kCoT;
  static constexpr int kCiGroups = C / kCiT;
  static constexpr int kThreads = kCoGroups * kCiGroups;  // 128 (C = 32) or 64 (C = 16)
};

struct WgtTiling {
  int C = 0, groups = 0, N = 0, H = 0, W = 0;
  int tile_h = 0, tile_w = 0;  // pixels per work item; tile_w is 4 or 8
  int tiles_x = 0, tiles_y = 0;
  int items = 0;     // per group: N * tiles_y * tiles_x
  int blocks = 0;    // per group
  int x_row = 0;     // tile_w + 2
  int x_plane = 0;   // (tile_h + 2) * x_row, rounded up to odd
  int dy_plane = 0;  // tile_h * tile_w, rounded up to odd
  int x_floats = 0, dy_floats = 0;
  int smem_bytes() const { return (x_floats + dy_floats) * 4; }
  int64_t partial_floats() const { return int64_t(groups) * blocks * C * C * 9; }
};

// Items of at most 8 x 8 pixels (7 x 8 for 7-row images, 7 x 4 for 28 columns: little
// padding); blocks per group chosen so the whole grid is about `target_blocks` blocks.
inline WgtTiling wgt_tiling(int C, int groups, int N, int H, int W, int target_blocks) {
  WgtTiling t;
  t.C = C;
  t.groups = groups;
  t.N = N;
  t.H = H;
  t.W = W;
  t.tile_w = (W % 8 != 0 && W % 4 == 0) ? 4 : 8;
  t.tiles_x = ceil_div(W, t.tile_w);
  t.tiles_y = ceil_div(H, 8);
  t.tile_h = ceil_div(H, t.tiles_y);
  t.items = N * t.tiles_y * t.tiles_x;
  int per_group = ceil_div(target_blocks, groups);
  per_group = per_group < 1 ? 1 : per_group;
  t.blocks = per_group < t.items ? per_group : t.items;
  t.x_row = t.tile_w + 2;
  t.x_plane = ((t.tile_h + 2) * t.x_row) | 1;
  t.dy_plane = (t.tile_h * t.tile_w) | 1;
  t.x_floats = C * t.x_plane;
  t.dy_floats = C * t.dy_plane;
  return t;
}

// Stages work item `item` of group g: the x tile with halo (C planes of (tile_h + 2) x x_row)
// and the dy tile (C planes of tile_h x tile_w), zero outside the image.
template <int C>
NV_HD void wgt_stage(const WgtTiling& t, int g, int item, const float* x, const float* dy,
                     float* x_s, float* dy_s, int tid) {
  const int tiles = t.tiles_x * t.tiles_y;
  const int n = item / tiles, tile = item % tiles;
  const int oh = (tile / t.tiles_x) * t.tile_h, ow = (tile % t.tiles_x) * t.tile_w;
  const int64_t hw = int64_t(t.H) * t.W;
  const int64_t base = (int64_t(n) * t.groups * C + int64_t(g) * C) * hw;
  const int threads = WgtShape<C>::kThreads;
  const int xr = t.tile_h + 2;
  for (int idx = tid; idx < C * xr * t.x_row; idx += threads) {
    const int c = idx / (xr * t.x_row), rc = idx % (xr * t.x_row);
    const int r = rc / t.x_row, col = rc % t.x_row;
    const int h = oh - 1 + r, wc = ow - 1 + col;
    const bool inside = h >= 0 && h < t.H && wc >= 0 && wc < t.W;
    x_s[c * t.x_plane + rc] = inside ? x[base + c * hw + h * t.W + wc] : 0.0f;
  }
  for (int idx = tid; idx < C * t.tile_h * t.tile_w; idx += threads) {
    const int c = idx / (t.tile_h * t.tile_w), rc = idx % (t.tile_h * t.tile_w);
    const int h = oh + rc / t.tile_w, wc = ow + rc % t.tile_w;
    const bool inside = h < t.H && wc < t.W;
    dy_s[c * t.dy_plane + rc] = inside ? dy[base + c * hw + h * t.W + wc] : 0.0f;
  }
}

// Thread tid = a * kCiGroups + b owns output channels a*CO_T.. and input channels b*2..
template <int C>
NV_HD void wgt_accumulate(const WgtTiling& t, const float* x_s, const float* dy_s, int tid,
                          float (&acc)[WgtShape<C>::kCoT][WgtShape<C>::kCiT][9]) {
  using S = WgtShape<C>;
  const int a = tid / S::kCiGroups, b = tid % S::kCiGroups;
  const float* dy_t = dy_s + a * S::kCoT * t.dy_plane;
  const float* x_t = x_s + b * S::kCiT * t.x_plane;
  for (int r = 0; r < t.tile_h; ++r) {
    for (int seg = 0; seg < t.tile_w; seg += 4) {
      float d[S::kCoT][4];
      NV_UNROLL
      for (int o = 0; o < S::kCoT; ++o) {
        NV_UNROLL
        for (int p = 0; p < 4; ++p) d[o][p] = dy_t[o * t.dy_plane + r * t.tile_w + seg + p];
      }
      NV_UNROLL
      for (int i = 0; i < S::kCiT; ++i) {
        NV_UNROLL
        for (int kh = 0; kh < 3; ++kh) {
          // Pixel p of the segment sees x tile column seg + p + kw (the halo shifts by one).
          const float* xr = x_t + i * t.x_plane + (r + kh) * t.x_row + seg;
          float xv[6];
          NV_UNROLL
          for (int j = 0; j < 6; ++j) xv[j] = xr[j];
          NV_UNROLL
          for (int kw = 0; kw < 3; ++kw) {
            NV_UNROLL
            for (int o = 0; o < S::kCoT; ++o) {
              float s = acc[o][i][kh * 3 + kw];
              NV_UNROLL
              for (int p = 0; p < 4; ++p) s += d[o][p] * xv[p + kw];
              acc[o][i][kh * 3 + kw] = s;
            }
          }
        }
      }
    }
  }
}

// Block `blk` of group g writes its partial sums: partial (groups, blocks, C, C, 9).
template <int C>
NV_HD void wgt_store_partial(const WgtTiling& t, int g, int blk, int tid,
                             const float (&acc)[WgtShape<C>::kCoT][WgtShape<C>::kCiT][9],
                             float* partial) {
  using S = WgtShape<C>;
  const int a = tid / S::kCiGroups, b = tid % S::kCiGroups;
  float* p = partial + (int64_t(g) * t.blocks + blk) * C * C * 9;
  NV_UNROLL
  for (int o = 0; o < S::kCoT; ++o) {
    NV_UNROLL
    for (int i = 0; i < S::kCiT; ++i) {
      NV_UNROLL
      for (int k = 0; k < 9; ++k)
        p[((a * S::kCoT + o) * C + b * S::kCiT + i) * 9 + k] = acc[o][i][k];
    }
  }
}

// dw element e of (groups * C, C, 3, 3): the sum of the group's block partials, in block order.
NV_HD float wgt_reduce(const WgtTiling& t, int64_t e, const float* partial) {
  const int64_t per_group = int64_t(t.C) * t.C * 9;
  const int64_t g = e / per_group, off = e % per_group;
  const float* p = partial + g * t.blocks * per_group + off;
  float s = 0.0f;
  for (int b = 0; b < t.blocks; ++b) s += p[b * per_group];
  return s;
}

}  // namespace nextvit::kernels::cuda::gconv
