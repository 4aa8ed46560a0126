// kernels::cuda::conv2d_*: picks one implementation per shape (kernels/cuda/conv2d_paths.h)
//
//   3x3, stride 1, pad 1, 16 or 32 channels per group in and out  -> hand-written grouped kernel
//   1x1, stride 1, no padding                                      -> cuBLAS GEMMs
//   anything else                                                  -> cuDNN (direct kernel
//                                                                     in builds without cuDNN)
//
// and adds the bias / computes its gradient with the two small kernels below. The environment
// variable NEXTVIT_CUDA_CONV=cudnn (or =direct) sends every shape through cuDNN (or the direct
// kernel) instead: for comparing whole-model timings and for debugging; read once.
//
// Scratch: every path takes what it needs from cuda_rt::workspace (one buffer shared by all
// kernels, safe because all work runs in order on one stream), so conv2d_workspace_floats
// reports 0 and the op allocates nothing.
#include <cstdlib>
#include <cstring>

#include "kernels/conv2d.h"
#include "kernels/cuda/conv2d_paths.h"
#include "kernels/cuda/launch.cuh"

namespace nextvit::kernels::cuda {
namespace {

enum class Path { kGrouped3x3, kPointwise, kCudnn, kDirect };

enum class Override { kAuto, kCudnn, kDirect };

Override path_override() {
  static const Override o = [] {
    const char* v = std::getenv("NEXTVIT_CUDA_CONV");
    if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return Override::kAuto;
    if (std::strcmp(v, "cudnn") == 0) return Override::kCudnn;
    if (std::strcmp(v, "direct") == 0) return Override::kDirect;
    NV_FAIL("NEXTVIT_CUDA_CONV must be auto, cudnn or direct, got '{}'", v);
  }();
  return o;
}

Path choose(const Conv2dShape& s) {
  switch (path_override()) {
    case Override::kCudnn:
      if (conv_paths::cudnn_built()) return Path::kCudnn;
      break;
    case Override::kDirect:
      return Path::kDirect;
    case Override::kAuto:
      break;
  }
  if (conv_paths::grouped3x3_supported(s)) return Path::kGrouped3x3;
  if (s.pointwise()) return Path::kPointwise;
  return conv_paths::cudnn_built() ? Path::kCudnn : Path::kDirect;
}

}  // namespace

namespace conv_paths {
namespace {

// Index is uint32_t when the tensor has fewer than 2^31 elements (the usual case: 32-bit
// division is several times cheaper than 64-bit; the bound leaves room for the grid stride),
// int64_t otherwise.
template <typename Index>
__global__ void add_channel_bias_kernel(Index n, Index C, Index P, const float* __restrict__ b,
                                        float* __restrict__ y) {
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < n;
       i += Index(gridDim.x) * blockDim.x) {
    y[i] += b[i / P % C];
  }
}

// One block per channel; its threads walk the channel's N rows of P values and block_sum
// their totals. Rows at least half a block long are walked row by row (coalesced, no division);
// shorter rows (7 x 7 images) are walked as one flat range so no thread idles.
__global__ void channel_sum_kernel(int64_t N, int64_t C, int64_t P, const float* __restrict__ dy,
                                   float* __restrict__ db) {
  const int64_t c = blockIdx.x;
  float acc = 0.0f;
  if (2 * P >= blockDim.x) {
    for (int64_t n = 0; n < N; ++n) {
      const float* row = dy + (n * C + c) * P;
      for (int64_t p = threadIdx.x; p < P; p += blockDim.x) acc += row[p];
    }
  } else {
    // 32-bit index math: the host checked N * P < 2^31.
    const unsigned np = unsigned(N * P), p32 = unsigned(P);
    for (unsigned q = threadIdx.x; q < np; q += blockDim.x) {
      const unsigned n = q / p32;
      acc += dy[(int64_t(n) * C + c) * P + (q - n * p32)];
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) db[c] = acc;
}

}  // namespace

void add_channel_bias(int64_t N, int64_t C, int64_t P, const float* b, float* y) {
  const int64_t n = N * C * P;
  if (n == 0) return;
  if (n < (int64_t(1) << 31)) {
    NV_LAUNCH(grid_size(n, 256), 256, 0, stream(), add_channel_bias_kernel<uint32_t>)
    (uint32_t(n), uint32_t(C), uint32_t(P), b, y);
  } else {
    NV_LAUNCH(grid_size(n, 256), 256, 0, stream(), add_channel_bias_kernel<int64_t>)(n, C, P, b, y);
  }
  NV_CUDA_CHECK_LAUNCH("conv2d bias over ({}, {}, {})", N, C, P);
}

void channel_sum(int64_t N, int64_t C, int64_t P, const float* dy, float* db) {
  if (C == 0) return;
  NV_CHECK(C <= 0x7fffffff && N * P < (int64_t(1) << 31),
           "conv2d bias gradient over ({}, {}, {}): too large for the kernel's index math", N, C,
           P);
  NV_LAUNCH(unsigned(C), 512, 0, stream(), channel_sum_kernel)(N, C, P, dy, db);
  NV_CUDA_CHECK_LAUNCH("conv2d bias gradient over ({}, {}, {})", N, C, P);
}

}  // namespace conv_paths

void conv2d_workspace_floats(const Conv2dShape&, int64_t* floats) {
  *floats = 0;
}

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
                    float* /*workspace: see the file comment*/) {
  switch (choose(s)) {
    case Path::kGrouped3x3:
      conv_paths::grouped3x3_forward(s, x, w, y);
      break;
    case Path::kPointwise:
      conv_paths::pointwise_forward(s, x, w, y);
      break;
    case Path::kCudnn:
      conv_paths::cudnn_forward(s, x, w, y);
      break;
    case Path::kDirect:
      conv_paths::direct_forward(s, x, w, y);
      break;
  }
  if (b) conv_paths::add_channel_bias(s.batch, s.out_channels, s.out_h() * s.out_w(), b, y);
}

void conv2d_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                          float* /*workspace*/) {
  switch (choose(s)) {
    case Path::kGrouped3x3:
      conv_paths::grouped3x3_backward_data(s, dy, w, dx);
      break;
    case Path::kPointwise:
      conv_paths::pointwise_backward_data(s, dy, w, dx);
      break;
    case Path::kCudnn:
      conv_paths::cudnn_backward_data(s, dy, w, dx);
      break;
    case Path::kDirect:
      conv_paths::direct_backward_data(s, dy, w, dx);
      break;
  }
}

void conv2d_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                            float* db, float* /*workspace*/) {
  if (dw) {
    switch (choose(s)) {
      case Path::kGrouped3x3:
        conv_paths::grouped3x3_backward_weight(s, x, dy, dw);
        break;
      case Path::kPointwise:
        conv_paths::pointwise_backward_weight(s, x, dy, dw);
        break;
      case Path::kCudnn:
        conv_paths::cudnn_backward_weight(s, x, dy, dw);
        break;
      case Path::kDirect:
        conv_paths::direct_backward_weight(s, x, dy, dw);
        break;
    }
  }
  if (db) conv_paths::channel_sum(s.batch, s.out_channels, s.out_h() * s.out_w(), dy, db);
}

}  // namespace nextvit::kernels::cuda
