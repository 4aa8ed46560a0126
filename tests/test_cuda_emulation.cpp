// Host emulation of the hand-written CUDA kernels, so that their index math is checked on a
// machine without a GPU (these tests run in every build, CUDA or not).
//
// Grouped 3x3 convolution: the kernels in kernels/cuda/grouped_conv3x3.cu are thin loops over
// the __host__ __device__ steps of kernels/cuda/grouped_conv3x3_impl.h (stage -> barrier ->
// accumulate -> barrier ... -> store). The emulation below runs those same steps for every
// block, in the kernel's order, for every thread of the block between two barriers, with the
// block's shared memory as a host buffer. Shared memory is poisoned with NaN before each
// staging step and the output before the launch, so a read of something the block did not
// stage, or an output no thread wrote, shows up as NaN against the CPU convolution.
//
// Pooled attention: see the second half of the file.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cuda/grouped_conv3x3_impl.h"
#include "kernels/cuda/pooled_attention_impl.h"
#include "kernels/pooled_attention.h"
#include "test_util.h"

using namespace nextvit;
namespace gconv = nextvit::kernels::cuda::gconv;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int kSharedLimit = 48 * 1024;  // the kernels launch without the opt-in

// Guard words after a block's shared memory: a write past the end shows as a changed guard.
constexpr size_t kGuard = 64;

void check_guard(const std::vector<float>& smem, size_t used) {
  for (size_t i = used; i < used + kGuard; ++i) {
    INFO("shared-memory guard word " << i - used << " was written");
    REQUIRE(std::isnan(smem[i]));
  }
}

// fwd_kernel<C, Flip> of grouped_conv3x3.cu, block by block, thread by thread.
template <int C, bool Flip>
void emulate_fwd(const kernels::Conv2dShape& s, const float* x, const float* w, float* y) {
  const gconv::FwdTiling t = gconv::fwd_tiling(C, int(s.groups), int(s.in_h), int(s.in_w));
  REQUIRE(t.threads <= gconv::kMaxThreads);
  REQUIRE(t.smem_bytes() <= kSharedLimit);
  struct Acc {
    float v[gconv::kCoPerThread][gconv::kPxPerThread];
  };
  const size_t used = size_t(t.input_floats + t.weight_floats);
  std::vector<float> smem(used + kGuard);
  float* w_s = smem.data();  // weights first, as in the kernel
  float* in_s = smem.data() + gconv::weight_chunk_floats<C>();
  REQUIRE(gconv::weight_chunk_floats<C>() == t.weight_floats);
  for (int n = 0; n < s.batch; ++n) {                 // blockIdx.z
    for (int g = 0; g < s.groups; ++g) {              // blockIdx.y
      for (int tile = 0; tile < t.tiles(); ++tile) {  // blockIdx.x
        std::vector<Acc> acc(size_t(t.threads), Acc{});
        for (int ci0 = 0; ci0 < C; ci0 += gconv::kCiChunk) {
          std::fill(smem.begin(), smem.end(), kNaN);
          for (int tid = 0; tid < t.threads; ++tid) {
            gconv::fwd_stage<C, Flip>(t, n, g, tile, ci0, x, w, in_s, w_s, tid);
          }
          check_guard(smem, used);
          // __syncthreads()
          for (int tid = 0; tid < t.threads; ++tid) {
            gconv::fwd_accumulate<C>(t, in_s, w_s, tid, acc[size_t(tid)].v);
          }
        }
        for (int tid = 0; tid < t.threads; ++tid) {
          gconv::fwd_store<C>(t, n, g, tile, tid, acc[size_t(tid)].v, y);
        }
      }
    }
  }
}

// wgt_kernel<C> + wgt_reduce_kernel.
template <int C>
void emulate_wgt(const kernels::Conv2dShape& s, const float* x, const float* dy, float* dw,
                 int target_blocks) {
  using S = gconv::WgtShape<C>;
  const gconv::WgtTiling t =
      gconv::wgt_tiling(C, int(s.groups), int(s.batch), int(s.in_h), int(s.in_w), target_blocks);
  REQUIRE(t.smem_bytes() <= kSharedLimit);
  REQUIRE(t.blocks >= 1);
  REQUIRE(t.blocks <= t.items);
  struct Acc {
    float v[S::kCoT][S::kCiT][9];
  };
  std::vector<float> partial(size_t(t.partial_floats()), kNaN);
  const size_t used = size_t(t.x_floats + t.dy_floats);
  std::vector<float> smem(used + kGuard);
  for (int g = 0; g < s.groups; ++g) {          // blockIdx.y
    for (int blk = 0; blk < t.blocks; ++blk) {  // blockIdx.x
      std::vector<Acc> acc(size_t(S::kThreads), Acc{});
      for (int item = blk; item < t.items; item += t.blocks) {
        std::fill(smem.begin(), smem.end(), kNaN);
        for (int tid = 0; tid < S::kThreads; ++tid) {
          gconv::wgt_stage<C>(t, g, item, x, dy, smem.data(), smem.data() + t.x_floats, tid);
        }
        check_guard(smem, used);
        for (int tid = 0; tid < S::kThreads; ++tid) {
          gconv::wgt_accumulate<C>(t, smem.data(), smem.data() + t.x_floats, tid,
                                   acc[size_t(tid)].v);
        }
      }
      for (int tid = 0; tid < S::kThreads; ++tid) {
        gconv::wgt_store_partial<C>(t, g, blk, tid, acc[size_t(tid)].v, partial.data());
      }
    }
  }
  for (float p : partial) REQUIRE_FALSE(std::isnan(p));  // every partial written
  for (int64_t e = 0; e < s.out_channels * C * 9; ++e)
    dw[e] = gconv::wgt_reduce(t, e, partial.data());
}

kernels::Conv2dShape grouped_shape(int64_t n, int64_t channels, int64_t h, int64_t w, int64_t c) {
  kernels::Conv2dShape s;
  s.batch = n;
  s.in_channels = s.out_channels = channels;
  s.in_h = h;
  s.in_w = w;
  s.kernel_h = s.kernel_w = 3;
  s.pad_h = s.pad_w = 1;
  s.groups = channels / c;
  return s;
}

template <int C>
void check_grouped(int64_t n, int64_t channels, int64_t h, int64_t w, int target_blocks) {
  INFO("x (" << n << ", " << channels << ", " << h << ", " << w << "), " << C
             << " channels per group, " << target_blocks << " target blocks");
  const kernels::Conv2dShape s = grouped_shape(n, channels, h, w, C);
  Generator gen(uint64_t(n * 1000 + channels + h * 7 + w));
  Tensor x = test::random_tensor({n, channels, h, w}, gen);
  Tensor wt = test::random_tensor({channels, C, 3, 3}, gen, -0.2f, 0.2f);
  Tensor dy = test::random_tensor({n, channels, h, w}, gen);

  Tensor y_ref = Tensor::empty(x.shape()), dx_ref = Tensor::empty(x.shape());
  Tensor dw_ref = Tensor::empty(wt.shape());
  kernels::cpu::conv2d_forward(s, x.data<float>(), wt.data<float>(), nullptr, y_ref.data<float>(),
                               nullptr);
  kernels::cpu::conv2d_backward_data(s, dy.data<float>(), wt.data<float>(), dx_ref.data<float>(),
                                     nullptr);
  kernels::cpu::conv2d_backward_weight(s, x.data<float>(), dy.data<float>(), dw_ref.data<float>(),
                                       nullptr, nullptr);

  Tensor y = Tensor::full(x.shape(), kNaN), dx = Tensor::full(x.shape(), kNaN);
  Tensor dw = Tensor::full(wt.shape(), kNaN);
  emulate_fwd<C, false>(s, x.data<float>(), wt.data<float>(), y.data<float>());
  emulate_fwd<C, true>(s, dy.data<float>(), wt.data<float>(), dx.data<float>());
  emulate_wgt<C>(s, x.data<float>(), dy.data<float>(), dw.data<float>(), target_blocks);
  NV_REQUIRE_CLOSE(y, y_ref, 1e-4, 1e-5);
  NV_REQUIRE_CLOSE(dx, dx_ref, 1e-4, 1e-5);
  NV_REQUIRE_CLOSE(dw, dw_ref, 1e-4, 1e-4);
}

}  // namespace

TEST_CASE("grouped 3x3 tiling: Next-ViT shapes get the intended tiles", "[cuda-emulation]") {
  struct Want {
    int hw, tile_h, tile_w, tiles_y, tiles_x, threads;
  };
  for (const Want& c : {Want{56, 8, 28, 7, 2, 224}, Want{28, 7, 28, 4, 1, 196},
                        Want{14, 14, 16, 1, 1, 224}, Want{7, 7, 8, 1, 1, 56}}) {
    INFO(c.hw << "x" << c.hw);
    const gconv::FwdTiling t = gconv::fwd_tiling(32, 3, c.hw, c.hw);
    CHECK(t.tile_h == c.tile_h);
    CHECK(t.tile_w == c.tile_w);
    CHECK(t.tiles_y == c.tiles_y);
    CHECK(t.tiles_x == c.tiles_x);
    CHECK(t.threads == c.threads);
    // Conflict-free input reads: the row stride is congruent to the threads per row.
    CHECK(t.row_stride % 32 == t.strips_per_row % 32);
  }
}

TEST_CASE("grouped 3x3 tiling: every image size fits the launch limits", "[cuda-emulation]") {
  for (int c : {16, 32}) {
    for (int h = 1; h <= 80; ++h) {
      for (int w = 1; w <= 80; ++w) {
        const gconv::FwdTiling t = gconv::fwd_tiling(c, 2, h, w);
        INFO(c << " channels, " << h << "x" << w);
        REQUIRE(t.threads >= 1);
        REQUIRE(t.threads <= gconv::kMaxThreads);
        REQUIRE(t.smem_bytes() <= kSharedLimit);
        REQUIRE(t.tiles_x * t.tile_w >= w);
        REQUIRE((t.tiles_x - 1) * t.tile_w < w);  // no empty tile
        REQUIRE(t.tiles_y * t.tile_h >= h);
        REQUIRE((t.tiles_y - 1) * t.tile_h < h);
        REQUIRE(t.row_stride >= t.tile_w + 2);
        const gconv::WgtTiling u = gconv::wgt_tiling(c, 2, 3, h, w, 528);
        REQUIRE(u.smem_bytes() <= kSharedLimit);
        REQUIRE(u.tiles_x * u.tile_w >= w);
        REQUIRE(u.tiles_y * u.tile_h >= h);
        REQUIRE(u.x_plane % 2 == 1);
        REQUIRE(u.dy_plane % 2 == 1);
      }
    }
  }
}

TEST_CASE("grouped 3x3 emulation matches the CPU convolution: Next-ViT shapes",
          "[cuda-emulation]") {
  // MHCA of Next-ViT-S stages 1-4 (96 @ 56, 192 @ 28, 384 @ 14, 768 @ 7), fewer groups and
  // images than the model so the emulation stays quick; tiles depend only on H and W.
  check_grouped<32>(1, 64, 56, 56, 40);
  check_grouped<32>(2, 64, 28, 28, 16);
  check_grouped<32>(2, 96, 14, 14, 528);
  check_grouped<32>(2, 128, 7, 7, 3);
}

TEST_CASE("grouped 3x3 emulation matches the CPU convolution: odd shapes and 16 channels",
          "[cuda-emulation]") {
  check_grouped<32>(3, 32, 9, 11, 5);   // partial tiles in both directions, one group
  check_grouped<32>(1, 64, 1, 1, 528);  // a single pixel: every tap in the padding
  check_grouped<32>(2, 32, 33, 17, 7);  // two tiles across, uneven rows
  check_grouped<16>(2, 48, 13, 10, 4);
  check_grouped<16>(1, 32, 28, 28, 528);
  check_grouped<16>(2, 16, 3, 70, 9);  // three tiles across, wide and flat
}

// ---- pooled attention -----------------------------------------------------------------------
//
// The CUDA kernels (kernels/cuda/pooled_attention.cu) work warp by warp. The emulation below
// walks their grid, warps and lanes with the index helpers of pooled_attention_impl.h (which
// query rows a block and a warp take, which keys a lane scores, which channel and which keys a
// lane sums for the output, where each thread's dK/dV elements and partials go, the padded
// shared-memory layouts) and does each warp-wide reduction or shuffle over the 32 lanes' values
// explicitly, in the order the kernel's butterfly would not matter for. Poisoned outputs and
// partials catch anything the mapping misses.
namespace {

namespace pa = nextvit::kernels::cuda::pattn;

struct AttnCase {
  int64_t bh, n, m, d;
};

// forward kernel: blocks (row tiles, bh), warps take rows, lanes take keys then channels.
template <int D, int KPL>
void emulate_attn_forward(const AttnCase& c, float scale, const float* q, const float* k,
                          const float* v, float* out, float* probs) {
  const pa::FwdLayout L = pa::fwd_layout(int(c.n), int(c.m), D);
  std::vector<float> smem(size_t(L.smem_floats) + kGuard, kNaN);
  for (int64_t bh = 0; bh < c.bh; ++bh) {
    for (int bx = 0; bx < L.row_blocks; ++bx) {
      std::fill(smem.begin(), smem.end(), kNaN);
      float* k_s = smem.data() + L.k_offset;
      float* v_s = smem.data() + L.v_offset;
      for (int tid = 0; tid < pa::kThreads; ++tid) {
        pa::stage_kv<D>(L, bh, k, v, k_s, v_s, tid);
      }
      check_guard(smem, size_t(L.smem_floats));
      for (int warp = 0; warp < pa::kWarps; ++warp) {
        float* q_s = smem.data() + L.q_offset + warp * D;
        for (int row = pa::first_row(bx, warp); row < pa::row_end(L, bx); row += pa::kWarps) {
          const float* qrow = q + (bh * c.n + row) * D;
          for (int lane = 0; lane < 32; ++lane) pa::stage_q_row<D>(qrow, q_s, lane);
          // Scores: lane holds keys lane + 32 t.
          float s[32][KPL];
          float mx = -INFINITY;
          for (int lane = 0; lane < 32; ++lane) {
            pa::lane_scores<D, KPL>(L, q_s, k_s, scale, lane, s[lane]);
            for (int t = 0; t < KPL; ++t) mx = std::max(mx, s[lane][t]);
          }
          float sum = 0.0f;
          for (int lane = 0; lane < 32; ++lane) {
            for (int t = 0; t < KPL; ++t) {
              s[lane][t] = pa::key_of(lane, t) < c.m ? std::exp(s[lane][t] - mx) : 0.0f;
              sum += s[lane][t];
            }
          }
          float* prow = probs + (bh * c.n + row) * c.m;
          for (int lane = 0; lane < 32; ++lane) {
            for (int t = 0; t < KPL; ++t) {
              s[lane][t] *= 1.0f / sum;
              const int j = pa::key_of(lane, t);
              if (j < c.m) prow[j] = s[lane][t];
            }
          }
          // Output: lane sums channel out_channel(lane) over keys of its split.
          float o[32];
          for (int lane = 0; lane < 32; ++lane) {
            o[lane] = pa::lane_weighted_sum<D, KPL>(L, v_s, lane,
                                                    [&](int t, int src) { return s[src][t]; });
          }
          float* orow = out + (bh * c.n + row) * D;
          for (int lane = 0; lane < 32; ++lane) {
            float total = o[lane];
            for (int off = D; off < 32; off <<= 1) total += o[lane ^ off];  // shfl_xor
            if (pa::writes_channel<D>(lane)) orow[pa::out_channel<D>(lane)] = total;
          }
        }
      }
    }
  }
}

template <int D, int KPL>
void emulate_attn_backward(const AttnCase& c, float scale, const float* q, const float* k,
                           const float* v, const float* probs, const float* dout, float* dq,
                           float* dk, float* dv, int target_blocks) {
  const pa::BwdLayout L = pa::bwd_layout(int(c.bh), int(c.n), int(c.m), D, target_blocks);
  constexpr int kMaxE = pa::max_elems_per_thread<D, KPL>();
  REQUIRE(L.elems_per_thread <= kMaxE);
  std::vector<float> part(size_t(L.partial_floats()), kNaN);
  std::vector<float> smem(size_t(L.smem_floats) + kGuard, kNaN);
  for (int64_t bh = 0; bh < c.bh; ++bh) {
    for (int split = 0; split < L.splits; ++split) {
      std::fill(smem.begin(), smem.end(), kNaN);
      float* k_s = smem.data() + L.k_offset;
      float* v_s = smem.data() + L.v_offset;
      for (int tid = 0; tid < pa::kThreads; ++tid) pa::stage_kv<D>(L, bh, k, v, k_s, v_s, tid);
      std::vector<std::vector<float>> acc_k(pa::kThreads, std::vector<float>(kMaxE, 0.0f));
      std::vector<std::vector<float>> acc_v(pa::kThreads, std::vector<float>(kMaxE, 0.0f));
      for (int tile = split; tile < L.tiles; tile += L.splits) {
        // Phase A: each warp takes rows of the tile.
        for (int warp = 0; warp < pa::kWarps; ++warp) {
          for (int r = warp; r < pa::kTileRows; r += pa::kWarps) {
            const int row = tile * pa::kTileRows + r;
            float* q_s = smem.data() + L.q_offset + r * (D + 1);
            float* do_s = smem.data() + L.do_offset + r * (D + 1);
            float* p_s = smem.data() + L.p_offset + r * L.p_row;
            float* ds_s = smem.data() + L.ds_offset + r * L.p_row;
            if (row >= c.n) {
              for (int lane = 0; lane < 32; ++lane)
                pa::zero_tile_row<D>(L, q_s, do_s, p_s, ds_s, lane);
              continue;
            }
            for (int lane = 0; lane < 32; ++lane) {
              pa::stage_q_row<D>(q + (bh * c.n + row) * D, q_s, lane);
              pa::stage_q_row<D>(dout + (bh * c.n + row) * D, do_s, lane);
            }
            float dp[32][KPL], p[32][KPL];
            float tsum = 0.0f;
            for (int lane = 0; lane < 32; ++lane) {
              pa::lane_scores<D, KPL>(L, do_s, v_s, 1.0f, lane, dp[lane]);  // dP = dO v^T
              for (int t = 0; t < KPL; ++t) {
                const int j = pa::key_of(lane, t);
                p[lane][t] = j < c.m ? probs[(bh * c.n + row) * c.m + j] : 0.0f;
                if (j < c.m) tsum += p[lane][t] * dp[lane][t];
              }
            }
            float ds[32][KPL];
            for (int lane = 0; lane < 32; ++lane) {
              for (int t = 0; t < KPL; ++t) {
                const int j = pa::key_of(lane, t);
                ds[lane][t] = j < c.m ? p[lane][t] * (dp[lane][t] - tsum) * scale : 0.0f;
                if (j < c.m) {
                  p_s[j] = p[lane][t];
                  ds_s[j] = ds[lane][t];
                }
              }
            }
            float o[32];
            for (int lane = 0; lane < 32; ++lane) {
              o[lane] = pa::lane_weighted_sum<D, KPL>(L, k_s, lane,
                                                      [&](int t, int src) { return ds[src][t]; });
            }
            for (int lane = 0; lane < 32; ++lane) {
              float total = o[lane];
              for (int off = D; off < 32; off <<= 1) total += o[lane ^ off];
              if (pa::writes_channel<D>(lane)) {
                dq[(bh * c.n + row) * D + pa::out_channel<D>(lane)] = total;
              }
            }
          }
        }
        // __syncthreads(); Phase B: each thread owns elements of dK and dV.
        for (int tid = 0; tid < pa::kThreads; ++tid) {
          pa::accumulate_kv_grads<D, kMaxE>(L, smem.data(), tid, acc_k[size_t(tid)].data(),
                                            acc_v[size_t(tid)].data());
        }
      }
      for (int tid = 0; tid < pa::kThreads; ++tid) {
        pa::store_kv_grads<D, kMaxE>(L, bh, split, tid, acc_k[size_t(tid)].data(),
                                     acc_v[size_t(tid)].data(), dk, dv, part.data());
      }
    }
  }
  if (L.splits > 1) {
    for (int64_t e = 0; e < c.bh * c.m * D; ++e) {
      dk[e] = pa::reduce_partial(L, e, part.data(), 0);
      dv[e] = pa::reduce_partial(L, e, part.data(), 1);
    }
  }
}

template <int D, int KPL>
void check_attention(const AttnCase& c, int target_blocks) {
  INFO("bh " << c.bh << " n " << c.n << " m " << c.m << " d " << D << ", " << target_blocks
             << " target blocks");
  Generator g(uint64_t(c.bh * 131 + c.n * 7 + c.m));
  Tensor q = test::random_tensor({c.bh, c.n, D}, g, -2.0f, 2.0f);
  Tensor k = test::random_tensor({c.bh, c.m, D}, g, -2.0f, 2.0f);
  Tensor v = test::random_tensor({c.bh, c.m, D}, g);
  Tensor dout = test::random_tensor({c.bh, c.n, D}, g);
  const float scale = 1.0f / std::sqrt(float(D));

  Tensor out_ref = Tensor::empty({c.bh, c.n, D}), p_ref = Tensor::empty({c.bh, c.n, c.m});
  kernels::cpu::pooled_attention_forward(c.bh, c.n, c.m, D, scale, q.data<float>(), k.data<float>(),
                                         v.data<float>(), out_ref.data<float>(),
                                         p_ref.data<float>());
  Tensor dq_ref = Tensor::empty(q.shape()), dk_ref = Tensor::empty(k.shape()),
         dv_ref = Tensor::empty(v.shape());
  kernels::cpu::pooled_attention_backward(c.bh, c.n, c.m, D, scale, q.data<float>(),
                                          k.data<float>(), v.data<float>(), p_ref.data<float>(),
                                          dout.data<float>(), dq_ref.data<float>(),
                                          dk_ref.data<float>(), dv_ref.data<float>());

  Tensor out = Tensor::full(out_ref.shape(), kNaN), p = Tensor::full(p_ref.shape(), kNaN);
  emulate_attn_forward<D, KPL>(c, scale, q.data<float>(), k.data<float>(), v.data<float>(),
                               out.data<float>(), p.data<float>());
  NV_REQUIRE_CLOSE(p, p_ref, 1e-5, 1e-6);
  NV_REQUIRE_CLOSE(out, out_ref, 1e-5, 1e-5);

  Tensor dq = Tensor::full(q.shape(), kNaN), dk = Tensor::full(k.shape(), kNaN),
         dv = Tensor::full(v.shape(), kNaN);
  emulate_attn_backward<D, KPL>(c, scale, q.data<float>(), k.data<float>(), v.data<float>(),
                                p_ref.data<float>(), dout.data<float>(), dq.data<float>(),
                                dk.data<float>(), dv.data<float>(), target_blocks);
  NV_REQUIRE_CLOSE(dq, dq_ref, 1e-4, 1e-5);
  NV_REQUIRE_CLOSE(dk, dk_ref, 1e-4, 1e-5);
  NV_REQUIRE_CLOSE(dv, dv_ref, 1e-4, 1e-5);
}

}  // namespace

TEST_CASE("pooled attention emulation matches the CPU kernels", "[cuda-emulation]") {
  check_attention<32, 2>({2, 196, 49, 32}, 4);    // E-MHSA at 224: 49 keys, split rows
  check_attention<32, 2>({3, 49, 49, 32}, 1000);  // stage 4: as many queries as keys
  check_attention<16, 1>({2, 37, 17, 16}, 8);     // d 16, odd sizes, partial tiles
  check_attention<32, 1>({1, 5, 1, 32}, 1);       // a single key
  check_attention<16, 8>({1, 70, 250, 16}, 2);    // many keys: 8 per lane
  check_attention<32, 4>({2, 33, 100, 32}, 1);
}
