#pragma once
// Index math and per-lane steps of the fused pooled-attention kernels
// (kernels/cuda/pooled_attention.cu), as __host__ __device__ functions shared with the host
// emulation in tests/test_cuda_emulation.cpp. The kernels add only what a host cannot share:
// the warp shuffles and reductions, and the barriers.
//
// Work mapping (both kernels: 256 threads = 8 warps, K and V of one head in shared memory with
// rows padded to d + 1 floats, so 32 lanes reading 32 different rows hit 32 different banks):
//
// forward   grid (ceil(n / 64), heads). A block takes 64 query rows, its warp w the rows
//           w, w + 8, ... of them: one warp per query row. Lane l scores keys l, l + 32, ...
//           (KPL = keys per lane, a template parameter: registers), the warp reduces the max
//           and the sum, lanes write their probabilities (coalesced). For the output, lane l
//           sums channel l % d over keys; with d = 16 the two half-warps take the even and odd
//           keys and are added with one shuffle. Probabilities move between lanes by shuffle.
//
// backward  grid (splits, heads). A block takes the query tiles split, split + splits, ... of
//           32 rows. Phase A, per tile: warps take rows as in the forward; per row,
//           dP_j = dout . v_j by lane (like the scores), the warp reduces sum_j p_j dP_j, lanes
//           form dS_j and write p and dS to shared memory, and dq is summed like the output
//           (from dS and k). Phase B, after a barrier: thread t owns the dK/dV elements
//           e = t, t + 256, ... (e = j * d + c) and adds the tile's 32 rows:
//           dK[j, c] += dS[r, j] q[r, c], dV[j, c] += p[r, j] dout[r, c]. After the last
//           tile each thread writes its elements, or, when the rows were split over several
//           blocks, a partial that a second kernel sums over the splits in order.
#include <cmath>
#include <cstdint>

#include "kernels/cuda/hd.h"

namespace nextvit::kernels::cuda::pattn {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerBlock = 64;  // forward: query rows per block
constexpr int kTileRows = 32;      // backward: query rows per tile

NV_HD int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

// Lane l's t-th key.
NV_HD int key_of(int lane, int t) {
  return lane + 32 * t;
}
// Output/dq channel of a lane, which half-warp's keys it sums (d = 16: two halves), and
// whether it writes the warp's result for its channel.
template <int D>
NV_HD int out_channel(int lane) {
  return lane % D;
}
template <int D>
NV_HD int key_parity(int lane) {
  return lane / D;
}
template <int D>
NV_HD bool writes_channel(int lane) {
  return lane < D;
}

struct FwdLayout {
  int n = 0, m = 0, d = 0;
  int row_blocks = 0;
  int k_offset = 0, v_offset = 0, q_offset = 0;  // floats into shared memory
  int smem_floats = 0;
  int smem_bytes() const { return smem_floats * 4; }
};

// Shared memory: k (m x (d+1)), v (m x (d+1)), one query row per warp (8 x d).
inline FwdLayout fwd_layout(int n, int m, int d) {
  FwdLayout L;
  L.n = n;
  L.m = m;
  L.d = d;
  L.row_blocks = ceil_div(n, kRowsPerBlock);
  L.k_offset = 0;
  L.v_offset = m * (d + 1);
  L.q_offset = 2 * m * (d + 1);
  L.smem_floats = L.q_offset + kWarps * d;
  return L;
}

NV_HD int first_row(int block_x, int warp) {
  return block_x * kRowsPerBlock + warp;
}
NV_HD int row_end(const FwdLayout& L, int block_x) {
  const int end = (block_x + 1) * kRowsPerBlock;
  return end < L.n ? end : L.n;
}

struct BwdLayout {
  int heads = 0, n = 0, m = 0, d = 0;
  int tiles = 0;   // query tiles of kTileRows rows
  int splits = 0;  // blocks per head
  int p_row = 0;   // m + 1: floats per row of the p and dS tiles
  int k_offset = 0, v_offset = 0, q_offset = 0, do_offset = 0, p_offset = 0, ds_offset = 0;
  int smem_floats = 0;
  int elems_per_thread = 0;  // dK (and dV) elements per thread: ceil(m * d / 256)
  int smem_bytes() const { return smem_floats * 4; }
  // Partials (2, splits, heads, m, d) when splits > 1: dk's, then dv's.
  int64_t partial_floats() const { return splits > 1 ? int64_t(2) * splits * heads * m * d : 0; }
};

// Splits chosen so the grid is about target_blocks blocks, at most one per tile.
inline BwdLayout bwd_layout(int heads, int n, int m, int d, int target_blocks) {
  BwdLayout L;
  L.heads = heads;
  L.n = n;
  L.m = m;
  L.d = d;
  L.tiles = ceil_div(n, kTileRows);
  int splits = ceil_div(target_blocks, heads);
  splits = splits < 1 ? 1 : splits;
  L.splits = splits < L.tiles ? splits : L.tiles;
  L.p_row = m + 1;
  L.k_offset = 0;
  L.v_offset = m * (d + 1);
  L.q_offset = 2 * m * (d + 1);
  L.do_offset = L.q_offset + kTileRows * (d + 1);
  L.p_offset = L.do_offset + kTileRows * (d + 1);
  L.ds_offset = L.p_offset + kTileRows * L.p_row;
  L.smem_floats = L.ds_offset + kTileRows * L.p_row;
  L.elems_per_thread = ceil_div(m * d, kThreads);
  return L;
}

// Registers a thread needs for its dK (and dV) elements with KPL keys per lane at most.
template <int D, int KPL>
constexpr int max_elems_per_thread() {
  return (32 * KPL * D + kThreads - 1) / kThreads;
}

// k and v of head h into shared memory, rows padded to D + 1; coalesced reads.
template <int D, typename Layout>
NV_HD void stage_kv(const Layout& L, int64_t h, const float* k, const float* v, float* k_s,
                    float* v_s, int tid) {
  const float* kh = k + h * L.m * D;
  const float* vh = v + h * L.m * D;
  for (int idx = tid; idx < L.m * D; idx += kThreads) {
    const int j = idx / D, c = idx % D;
    k_s[j * (D + 1) + c] = kh[idx];
    v_s[j * (D + 1) + c] = vh[idx];
  }
}

// One row of D floats into shared memory, by the lanes below D.
template <int D>
NV_HD void stage_q_row(const float* row, float* row_s, int lane) {
  if (lane < D) row_s[lane] = row[lane];
}

// s[t] = scale * (row . rows_s[key_of(lane, t)]) for the lane's keys, -inf past the last key.
// The forward's scores (row = q, rows_s = k) and the backward's dP (row = dout, rows_s = v).
template <int D, int KPL, typename Layout>
NV_HD void lane_scores(const Layout& L, const float* row_s, const float* rows_s, float scale,
                       int lane, float (&s)[KPL]) {
  NV_UNROLL
  for (int t = 0; t < KPL; ++t) {
    const int j = key_of(lane, t);
    if (j < L.m) {
      const float* kr = rows_s + j * (D + 1);
      float acc = 0.0f;
      NV_UNROLL
      for (int c = 0; c < D; ++c) acc += row_s[c] * kr[c];
      s[t] = acc * scale;
    } else {
      s[t] = -INFINITY;
    }
  }
}

// The lane's share of sum_j w_j rows_s[j, out_channel(lane)], w_j = get(t, src) being the
// weight that lane src holds in its slot t (key 32 t + src): the kernel passes a shuffle, the
// emulation an array read. All lanes call get() with the same t and the same loop bounds
// (the shuffles stay convergent); only the key parity depends on the lane.
template <int D, int KPL, typename Layout, typename Get>
NV_HD float lane_weighted_sum(const Layout& L, const float* rows_s, int lane, const Get& get) {
  constexpr int kSplit = 32 / D;  // key classes: 1 for d = 32, 2 for d = 16
  const int c = out_channel<D>(lane), parity = key_parity<D>(lane);
  float o = 0.0f;
  NV_UNROLL
  for (int t = 0; t < KPL; ++t) {
    if (32 * t >= L.m) break;
    NV_UNROLL
    for (int src0 = 0; src0 < 32; src0 += kSplit) {
      if (32 * t + src0 >= L.m) break;
      const int src = src0 + parity, j = 32 * t + src;
      const float w = get(t, src);
      if (j < L.m) o += w * rows_s[j * (D + 1) + c];
    }
  }
  return o;
}

// Rows of a tile past the last query: zeros, so that phase B adds nothing for them.
template <int D>
NV_HD void zero_tile_row(const BwdLayout& L, float* q_s, float* do_s, float* p_s, float* ds_s,
                         int lane) {
  if (lane < D) q_s[lane] = do_s[lane] = 0.0f;
  for (int j = lane; j < L.m; j += 32) p_s[j] = ds_s[j] = 0.0f;
}

// Phase B: thread tid's elements e = tid + u * 256 (j = e / D, c = e % D) of dK and dV
// accumulate the tile's rows. MAXE bounds u (registers); elements past m * D are skipped.
template <int D, int MAXE>
NV_HD void accumulate_kv_grads(const BwdLayout& L, const float* smem, int tid, float* acc_k,
                               float* acc_v) {
  const float* q_s = smem + L.q_offset;
  const float* do_s = smem + L.do_offset;
  const float* p_s = smem + L.p_offset;
  const float* ds_s = smem + L.ds_offset;
  NV_UNROLL
  for (int u = 0; u < MAXE; ++u) {
    const int e = tid + u * kThreads;
    if (e >= L.m * D) break;
    const int j = e / D, c = e % D;
    float ak = acc_k[u], av = acc_v[u];
    for (int r = 0; r < kTileRows; ++r) {
      ak += ds_s[r * L.p_row + j] * q_s[r * (D + 1) + c];
      av += p_s[r * L.p_row + j] * do_s[r * (D + 1) + c];
    }
    acc_k[u] = ak;
    acc_v[u] = av;
  }
}

// After the last tile: dk/dv of head h directly (one split), or the split's partials.
template <int D, int MAXE>
NV_HD void store_kv_grads(const BwdLayout& L, int64_t h, int split, int tid, const float* acc_k,
                          const float* acc_v, float* dk, float* dv, float* partial) {
  const int64_t per_head = int64_t(L.m) * D;
  NV_UNROLL
  for (int u = 0; u < MAXE; ++u) {
    const int e = tid + u * kThreads;
    if (e >= L.m * D) break;
    if (L.splits == 1) {
      dk[h * per_head + e] = acc_k[u];
      dv[h * per_head + e] = acc_v[u];
    } else {
      const int64_t all = int64_t(L.heads) * per_head;
      partial[int64_t(split) * all + h * per_head + e] = acc_k[u];
      partial[(int64_t(L.splits) + split) * all + h * per_head + e] = acc_v[u];
    }
  }
}

// Element e of dk (which = 0) or dv (which = 1), (heads, m, d) flat: the splits' partials
// added in split order.
NV_HD float reduce_partial(const BwdLayout& L, int64_t e, const float* partial, int which) {
  const int64_t all = int64_t(L.heads) * L.m * L.d;
  const float* p = partial + int64_t(which) * L.splits * all + e;
  float s = 0.0f;
  for (int b = 0; b < L.splits; ++b) s += p[b * all];
  return s;
}

}  // namespace nextvit::kernels::cuda::pattn
