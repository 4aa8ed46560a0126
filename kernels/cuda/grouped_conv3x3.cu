// The hand-written grouped 3x3 convolution (MHCA's: stride 1, padding 1, 16 or 32 channels per
// group, as many in as out): forward, backward-data and backward-weight as direct kernels.
//
// Why hand-written. A grouped convolution with 32 channels per group does 576 FMAs per output
// element over a 32 x 3 x 3 window, too little per group for an implicit GEMM to fill tensor
// cores in fp32, and too much data reuse to leave to the caches: each input pixel feeds 9 taps
// x 32 output channels. A direct kernel that stages an input tile and the group's weights in
// shared memory and keeps a block of outputs per thread in registers reads every input and
// weight from device memory about once per block and runs at the FMA pipes' rate.
//
// How it maps to the hardware (the index math and the per-thread loops are in
// grouped_conv3x3_impl.h, shared with the host emulation in tests/test_cuda_emulation.cpp):
// - Forward / backward-data: grid (tiles, groups, images), up to 256 threads. Shared memory
//   holds 8 input channels of the tile with its halo (rows padded so a warp's 32 reads hit 32
//   banks) and their 8 x 9 x C weights (about 20-28 KB: several blocks per SM). Each thread
//   accumulates 8 output channels x 4 pixels in registers: per input channel and tap, 2
//   broadcast 16-byte weight loads and 4 input loads feed 32 FMAs.
// - Backward-weight: grid (blocks per group, groups) of 128 threads (64 for 16 channels); each
//   block loops over its share of (image, 8x8 tile) items with the x tile + halo and the dy
//   tile staged in shared memory, keeping the partial sums of all 9 C^2 weights of its group
//   in registers (72 per thread). A second kernel adds the blocks' partials in a fixed order.
// There is no cross-block synchronisation and no atomic, so results are deterministic.
// Explained: docs/kernels/grouped_conv3x3_{forward,backward_data,backward_weight}.md.
// Derivation: docs/derivations.md#grouped-convolution-backward
#include "kernels/cuda/conv2d_paths.h"
#include "kernels/cuda/device_props.h"
#include "kernels/cuda/grouped_conv3x3_impl.h"
#include "kernels/cuda/launch.cuh"

namespace nextvit::kernels::cuda::conv_paths {
namespace {

using namespace gconv;

// Forward when !Flip (x -> y), backward-data when Flip (dy -> dx).
template <int C, bool Flip>
__global__ void __launch_bounds__(kMaxThreads)
    fwd_kernel(FwdTiling t, int batch, const float* __restrict__ x, const float* __restrict__ w,
               float* __restrict__ y) {
  // The weights come first so that the compiler can prove their 16-byte alignment and load a
  // thread's 8 output channels with two 128-bit loads.
  NV_DYNAMIC_SHARED(float, smem);
  float* w_s = smem;
  float* in_s = smem + weight_chunk_floats<C>();
  const int tile = blockIdx.x, g = blockIdx.y, tid = threadIdx.x;
  // Images beyond the grid's z extent (65535): the block moves on to image n + gridDim.z.
  for (int n = blockIdx.z; n < batch; n += gridDim.z) {
    float acc[kCoPerThread][kPxPerThread] = {};
    for (int ci0 = 0; ci0 < C; ci0 += kCiChunk) {
      fwd_stage<C, Flip>(t, n, g, tile, ci0, x, w, in_s, w_s, tid);
      __syncthreads();
      fwd_accumulate<C>(t, in_s, w_s, tid, acc);
      __syncthreads();  // the next chunk (or image) overwrites what this one read
    }
    fwd_store<C>(t, n, g, tile, tid, acc, y);
  }
}

template <int C>
__global__ void __launch_bounds__(WgtShape<C>::kThreads)
    wgt_kernel(WgtTiling t, const float* __restrict__ x, const float* __restrict__ dy,
               float* __restrict__ partial) {
  NV_DYNAMIC_SHARED(float, smem);
  float* x_s = smem;
  float* dy_s = smem + t.x_floats;
  const int blk = blockIdx.x, g = blockIdx.y, tid = threadIdx.x;
  float acc[WgtShape<C>::kCoT][WgtShape<C>::kCiT][9] = {};
  for (int item = blk; item < t.items; item += t.blocks) {
    wgt_stage<C>(t, g, item, x, dy, x_s, dy_s, tid);
    __syncthreads();
    wgt_accumulate<C>(t, x_s, dy_s, tid, acc);
    __syncthreads();
  }
  wgt_store_partial<C>(t, g, blk, tid, acc, partial);
}

__global__ void wgt_reduce_kernel(WgtTiling t, int64_t n, const float* __restrict__ partial,
                                  float* __restrict__ dw) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    dw[e] = wgt_reduce(t, e, partial);
  }
}

int channels_per_group(const Conv2dShape& s) {
  return static_cast<int>(s.in_channels / s.groups);
}

template <int C, bool Flip>
void launch_fwd(const Conv2dShape& s, const float* x, const float* w, float* y, const char* what) {
  const FwdTiling t = fwd_tiling(C, int(s.groups), int(s.in_h), int(s.in_w));
  NV_CHECK(t.smem_bytes() <= 48 * 1024,
           "{}: grouped 3x3 tiling of {}x{} needs {} bytes of shared "
           "memory",
           what, s.in_h, s.in_w, t.smem_bytes());
  const dim3 grid(t.tiles(), unsigned(s.groups),
                  unsigned(std::min<int64_t>(s.batch, grid_yz_limit())));
  NV_LAUNCH(grid, t.threads, t.smem_bytes(), stream(), fwd_kernel<C, Flip>)
  (t, int(s.batch), x, w, y);
  NV_CUDA_CHECK_LAUNCH(
      "{} (grouped 3x3, {} x {} tiles of {}x{}, {} threads) for input ({}, {}, "
      "{}, {}), {} groups",
      what, t.tiles_y, t.tiles_x, t.tile_h, t.tile_w, t.threads, s.batch, s.in_channels, s.in_h,
      s.in_w, s.groups);
}

template <int C>
void launch_wgt(const Conv2dShape& s, const float* x, const float* dy, float* dw) {
  // About four resident blocks per SM: enough to hide latency, few partials to add up.
  const WgtTiling t = wgt_tiling(C, int(s.groups), int(s.batch), int(s.in_h), int(s.in_w),
                                 4 * multiprocessor_count());
  float* partial = static_cast<float*>(cuda_rt::workspace(size_t(t.partial_floats()) * 4));
  const dim3 grid(unsigned(t.blocks), unsigned(s.groups));
  NV_LAUNCH(grid, WgtShape<C>::kThreads, t.smem_bytes(), stream(), wgt_kernel<C>)
  (t, x, dy, partial);
  NV_CUDA_CHECK_LAUNCH(
      "conv2d backward-weight (grouped 3x3, {} blocks per group) for input ({}, "
      "{}, {}, {}), {} groups",
      t.blocks, s.batch, s.in_channels, s.in_h, s.in_w, s.groups);
  const int64_t n = s.out_channels * C * 9;
  NV_LAUNCH(grid_size(n, 256), 256, 0, stream(), wgt_reduce_kernel)(t, n, partial, dw);
  NV_CUDA_CHECK_LAUNCH("conv2d backward-weight reduction of {} partials", t.blocks);
}

}  // namespace

bool grouped3x3_supported(const Conv2dShape& s) {
  if (s.kernel_h != 3 || s.kernel_w != 3 || s.stride_h != 1 || s.stride_w != 1 || s.pad_h != 1 ||
      s.pad_w != 1 || s.groups < 1) {
    return false;
  }
  const int64_t cin_g = s.in_channels / s.groups, cout_g = s.out_channels / s.groups;
  // Grid limits: groups on grid.y (65535); images on grid.z, looped over beyond 65535 (up to
  // 2^31 - 1); int index math per image.
  return cin_g == cout_g && (cin_g == 16 || cin_g == 32) && s.batch < (int64_t(1) << 31) &&
         s.groups <= 65535 && s.in_h * s.in_w * cin_g <= (int64_t(1) << 30);
}

void grouped3x3_forward(const Conv2dShape& s, const float* x, const float* w, float* y) {
  if (channels_per_group(s) == 32) {
    launch_fwd<32, false>(s, x, w, y, "conv2d forward");
  } else {
    launch_fwd<16, false>(s, x, w, y, "conv2d forward");
  }
}

void grouped3x3_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
  if (channels_per_group(s) == 32) {
    launch_fwd<32, true>(s, dy, w, dx, "conv2d backward-data");
  } else {
    launch_fwd<16, true>(s, dy, w, dx, "conv2d backward-data");
  }
}

void grouped3x3_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw) {
  if (channels_per_group(s) == 32) {
    launch_wgt<32>(s, x, dy, dw);
  } else {
    launch_wgt<16>(s, x, dy, dw);
  }
}

}  // namespace nextvit::kernels::cuda::conv_paths
