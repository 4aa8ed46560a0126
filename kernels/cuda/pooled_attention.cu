// Fused pooled attention on the GPU (kernels/pooled_attention.h): E-MHSA's softmax(q k^T s) v
// with few keys, in one kernel per direction.
//
// Why fused. With 49 keys and d = 32, a head's K and V are 12.5 KB: they fit in shared memory
// next to the work, and a query row's 49 scores fit in the registers of one warp. The unfused
// way (batched GEMM for q k^T, a softmax kernel, a batched GEMM for p v) writes the scores,
// reads them, writes the probabilities and reads them again, and runs GEMMs with K = 32 or
// N = 32, shapes too thin for cuBLAS to approach its peak. Here the forward reads q once,
// writes out and the probabilities once (the backward needs them), and reads K and V once per
// 64 query rows. The kernels are memory-bound; their arithmetic (4 n m d flops per head) is
// small beside what a GPU can do.
//
// The work mapping and the index math are in pooled_attention_impl.h (shared with the host
// emulation of tests/test_cuda_emulation.cpp); this file adds the warp shuffles, the barriers
// and the launches. Limits: d in {16, 32} (a lane per output channel, two key classes for 16);
// m <= 256 keys (up to 8 per lane in registers; K and V then take 66 KB of shared memory,
// granted through the opt-in above 48 KB).
// Explained: docs/kernels/pooled_attention_forward.md, docs/kernels/pooled_attention_backward.md
#include "kernels/cuda/device_props.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/pooled_attention_impl.h"
#include "kernels/pooled_attention.h"

namespace nextvit::kernels::cuda {
namespace {

using namespace pattn;

constexpr unsigned kFull = 0xffffffffu;

// Blocks per SM the forward asks ptxas to fit: 8 (2048 threads, full occupancy) where its
// shared memory allows that many, else 3 (d 32 with 256 keys: 66 KB each). Left to itself ptxas
// gave forward_kernel<16, 4> 48 registers and 20 bytes of spills; held to 32 it spills nothing
// (tools/kernel_resources.sh).
template <int D, int KPL>
constexpr int forward_min_blocks() {
  return D * KPL >= 256 ? 3 : 8;
}

template <int D, int KPL>
__global__ void __launch_bounds__(kThreads, forward_min_blocks<D, KPL>())
    forward_kernel(FwdLayout L, int64_t heads, float scale, const float* __restrict__ q,
                   const float* __restrict__ k, const float* __restrict__ v,
                   float* __restrict__ out, float* __restrict__ probs) {
  NV_DYNAMIC_SHARED(float, smem);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* k_s = smem + L.k_offset;
  float* v_s = smem + L.v_offset;
  float* q_s = smem + L.q_offset + warp * D;
  // Heads beyond the grid's y extent: the block moves on to head h + gridDim.y.
  for (int64_t h = blockIdx.y; h < heads; h += gridDim.y) {
    __syncthreads();  // the previous head's rows have finished reading K/V
    stage_kv<D>(L, h, k, v, k_s, v_s, threadIdx.x);
    __syncthreads();
    for (int row = first_row(blockIdx.x, warp); row < row_end(L, blockIdx.x); row += kWarps) {
      const int64_t r = h * L.n + row;
      stage_q_row<D>(q + r * D, q_s, lane);
      __syncwarp();
      float s[KPL];
      lane_scores<D, KPL>(L, q_s, k_s, scale, lane, s);
      float mx = s[0];
#pragma unroll
      for (int t = 1; t < KPL; ++t) mx = fmaxf(mx, s[t]);
      mx = warp_max(mx);
      float sum = 0.0f;
#pragma unroll
      for (int t = 0; t < KPL; ++t) {
        s[t] = key_of(lane, t) < L.m ? expf(s[t] - mx) : 0.0f;
        sum += s[t];
      }
      const float inv = 1.0f / warp_sum(sum);
      float* prow = probs + r * L.m;
#pragma unroll
      for (int t = 0; t < KPL; ++t) {
        s[t] *= inv;
        if (key_of(lane, t) < L.m) prow[key_of(lane, t)] = s[t];
      }
      float o = lane_weighted_sum<D, KPL>(
          L, v_s, lane, [&](int t, int src) { return __shfl_sync(kFull, s[t], src); });
      if (D < 32) o += __shfl_xor_sync(kFull, o, 16);
      if (writes_channel<D>(lane)) out[r * D + out_channel<D>(lane)] = o;
      __syncwarp();  // the next row's q overwrites q_s
    }
  }
}

// Derivation: docs/derivations.md#attention-backward
template <int D, int KPL>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(BwdLayout L, int64_t heads, float scale, const float* __restrict__ q,
                    const float* __restrict__ k, const float* __restrict__ v,
                    const float* __restrict__ probs, const float* __restrict__ dout,
                    float* __restrict__ dq, float* __restrict__ dk, float* __restrict__ dv,
                    float* __restrict__ partial) {
  constexpr int kMaxE = max_elems_per_thread<D, KPL>();
  NV_DYNAMIC_SHARED(float, smem);
  const int split = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float* k_s = smem + L.k_offset;
  const float* v_s = smem + L.v_offset;
  // Heads beyond the grid's y extent: the block moves on to head h + gridDim.y.
  for (int64_t h = blockIdx.y; h < heads; h += gridDim.y) {
    __syncthreads();  // the previous head's phase B has finished reading K/V and the tiles
    stage_kv<D>(L, h, k, v, smem + L.k_offset, smem + L.v_offset, threadIdx.x);
    float acc_k[kMaxE] = {}, acc_v[kMaxE] = {};
    for (int tile = split; tile < L.tiles; tile += L.splits) {
      __syncthreads();  // K/V staged; the previous tile's phase B has read the tile buffers
      // Phase A: one warp per query row.
      for (int rr = warp; rr < kTileRows; rr += kWarps) {
        const int row = tile * kTileRows + rr;
        float* q_s = smem + L.q_offset + rr * (D + 1);
        float* do_s = smem + L.do_offset + rr * (D + 1);
        float* p_s = smem + L.p_offset + rr * L.p_row;
        float* ds_s = smem + L.ds_offset + rr * L.p_row;
        if (row >= L.n) {
          zero_tile_row<D>(L, q_s, do_s, p_s, ds_s, lane);
          continue;
        }
        const int64_t r = h * L.n + row;
        stage_q_row<D>(q + r * D, q_s, lane);
        stage_q_row<D>(dout + r * D, do_s, lane);
        __syncwarp();
        float dp[KPL], p[KPL];
        lane_scores<D, KPL>(L, do_s, v_s, 1.0f, lane, dp);  // dP_j = dout . v_j
        float t_sum = 0.0f;
#pragma unroll
        for (int t = 0; t < KPL; ++t) {
          const int j = key_of(lane, t);
          p[t] = j < L.m ? probs[r * L.m + j] : 0.0f;
          if (j < L.m) t_sum += p[t] * dp[t];
        }
        t_sum = warp_sum(t_sum);
        float ds[KPL];
#pragma unroll
        for (int t = 0; t < KPL; ++t) {
          const int j = key_of(lane, t);
          ds[t] = j < L.m ? p[t] * (dp[t] - t_sum) * scale : 0.0f;
          if (j < L.m) {
            p_s[j] = p[t];
            ds_s[j] = ds[t];
          }
        }
        float o = lane_weighted_sum<D, KPL>(
            L, k_s, lane, [&](int t, int src) { return __shfl_sync(kFull, ds[t], src); });
        if (D < 32) o += __shfl_xor_sync(kFull, o, 16);
        if (writes_channel<D>(lane)) dq[r * D + out_channel<D>(lane)] = o;
      }
      __syncthreads();
      // Phase B: each thread adds the tile's rows into its dK/dV elements.
      accumulate_kv_grads<D, kMaxE>(L, smem, threadIdx.x, acc_k, acc_v);
    }
    store_kv_grads<D, kMaxE>(L, h, split, threadIdx.x, acc_k, acc_v, dk, dv, partial);
  }
}

__global__ void reduce_kernel(BwdLayout L, int64_t n, const float* __restrict__ partial,
                              float* __restrict__ dk, float* __restrict__ dv) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    dk[e] = reduce_partial(L, e, partial, 0);
    dv[e] = reduce_partial(L, e, partial, 1);
  }
}

// Grants a kernel more than 48 KB of dynamic shared memory when it needs it, or says why not.
template <typename Kernel>
void allow_shared(Kernel kernel, int bytes, const char* what, int64_t m, int64_t d) {
  NV_CHECK(bytes <= max_shared_bytes_per_block(),
           "{}: {} keys of dimension {} need {} bytes of shared memory, the device allows {}", what,
           m, d, bytes, max_shared_bytes_per_block());
  if (bytes > 48 * 1024) {
    NV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
                  "{}: granting {} bytes of shared memory", what, bytes);
  }
}

void check_supported(int64_t n, int64_t m, int64_t d, const char* what) {
  NV_CHECK(pooled_attention_cuda_supported(d, m),
           "{}: the CUDA kernel takes head dimension 16 or 32 and 1 to {} keys, got dimension "
           "{} with {} keys",
           what, kPooledAttentionMaxKeys, d, m);
  NV_CHECK(n * m < (int64_t(1) << 31) && n * d < (int64_t(1) << 31),
           "{}: {} queries of {} keys exceed the kernel's 32-bit index range", what, n, m);
}

template <int D, int KPL>
void launch_forward(int64_t heads, int64_t n, int64_t m, float scale, const float* q,
                    const float* k, const float* v, float* out, float* probs) {
  const FwdLayout L = fwd_layout(int(n), int(m), D);
  allow_shared(forward_kernel<D, KPL>, L.smem_bytes(), "pooled_attention_forward", m, D);
  const dim3 grid(unsigned(L.row_blocks), unsigned(std::min<int64_t>(heads, grid_yz_limit())));
  NV_LAUNCH(grid, kThreads, L.smem_bytes(), stream(), forward_kernel<D, KPL>)
  (L, heads, scale, q, k, v, out, probs);
  NV_CUDA_CHECK_LAUNCH("pooled_attention_forward: q ({}, {}, {}), k ({}, {}, {})", heads, n, D,
                       heads, m, D);
}

template <int D, int KPL>
void launch_backward(int64_t heads, int64_t n, int64_t m, float scale, const float* q,
                     const float* k, const float* v, const float* probs, const float* dout,
                     float* dq, float* dk, float* dv) {
  // Two blocks per SM's worth of work before splitting a head's rows over several blocks.
  const BwdLayout L = bwd_layout(int(heads), int(n), int(m), D, 2 * multiprocessor_count());
  allow_shared(backward_kernel<D, KPL>, L.smem_bytes(), "pooled_attention_backward", m, D);
  float* partial = L.splits > 1
                       ? static_cast<float*>(cuda_rt::workspace(size_t(L.partial_floats()) * 4))
                       : nullptr;
  const dim3 grid(unsigned(L.splits), unsigned(std::min<int64_t>(heads, grid_yz_limit())));
  NV_LAUNCH(grid, kThreads, L.smem_bytes(), stream(), backward_kernel<D, KPL>)
  (L, heads, scale, q, k, v, probs, dout, dq, dk, dv, partial);
  NV_CUDA_CHECK_LAUNCH("pooled_attention_backward: q ({}, {}, {}), k ({}, {}, {}), {} splits",
                       heads, n, D, heads, m, D, L.splits);
  if (L.splits > 1) {
    const int64_t elems = heads * m * D;
    NV_LAUNCH(grid_size(elems, 256), 256, 0, stream(), reduce_kernel)(L, elems, partial, dk, dv);
    NV_CUDA_CHECK_LAUNCH("pooled_attention_backward: sum of {} partials", L.splits);
  }
}

// Calls F<D, KPL> for the smallest KPL (keys per lane) that holds m keys.
template <template <int, int> class F, typename... Args>
void dispatch(int64_t m, int64_t d, Args... args) {
  const int64_t kpl = (m + 31) / 32;
  if (d == 32) {
    if (kpl <= 1) return F<32, 1>::run(args...);
    if (kpl <= 2) return F<32, 2>::run(args...);
    if (kpl <= 4) return F<32, 4>::run(args...);
    return F<32, 8>::run(args...);
  }
  if (kpl <= 1) return F<16, 1>::run(args...);
  if (kpl <= 2) return F<16, 2>::run(args...);
  if (kpl <= 4) return F<16, 4>::run(args...);
  return F<16, 8>::run(args...);
}

template <int D, int KPL>
struct Forward {
  template <typename... Args>
  static void run(Args... args) {
    launch_forward<D, KPL>(args...);
  }
};

template <int D, int KPL>
struct Backward {
  template <typename... Args>
  static void run(Args... args) {
    launch_backward<D, KPL>(args...);
  }
};

}  // namespace

void pooled_attention_forward(int64_t heads, int64_t n, int64_t m, int64_t d, float scale,
                              const float* q, const float* k, const float* v, float* out,
                              float* probs) {
  check_supported(n, m, d, "pooled_attention_forward");
  if (heads == 0 || n == 0) return;
  dispatch<Forward>(m, d, heads, n, m, scale, q, k, v, out, probs);
}

void pooled_attention_backward(int64_t heads, int64_t n, int64_t m, int64_t d, float scale,
                               const float* q, const float* k, const float* v, const float* probs,
                               const float* dout, float* dq, float* dk, float* dv) {
  check_supported(n, m, d, "pooled_attention_backward");
  if (heads == 0) return;
  if (n == 0) {
    // No query: the key and value gradients are zero.
    NV_CUDA_CHECK(cudaMemsetAsync(dk, 0, size_t(heads * m * d) * 4, stream()),
                  "pooled_attention_backward: zeroing dk");
    NV_CUDA_CHECK(cudaMemsetAsync(dv, 0, size_t(heads * m * d) * 4, stream()),
                  "pooled_attention_backward: zeroing dv");
    return;
  }
  dispatch<Backward>(m, d, heads, n, m, scale, q, k, v, probs, dout, dq, dk, dv);
}

}  // namespace nextvit::kernels::cuda
