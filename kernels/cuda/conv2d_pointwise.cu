// 1x1 convolutions (stride 1, no padding) as matrix products through cuBLAS. In NCHW an image
// x_n is already a (Cin, P) row-major matrix (P = H*W), so per image and group
//
//   forward          y_n,g  = W_g (Cout_g, Cin_g)  x_n,g (Cin_g, P)
//   backward data    dx_n,g = W_g^T                dy_n,g (Cout_g, P)
//   backward weight  dW_g   = sum_n dy_n,g  x_n,g^T
//
// The first two are one strided-batched GEMM per group over the images (the weight's batch
// stride is 0). The weight gradient sums over images, which no single GEMM of this layout can
// do; two ways, picked by which moves fewer bytes:
//   partials  one batched GEMM writes each image's (Cout_g, Cin_g) product, a kernel adds them:
//             extra traffic 2 * Cout_g * Cin_g floats per image. Wins for large images and
//             narrow layers (stage 1 at 56x56: 96 x 288 weights vs 3136 pixels).
//   gather    copy dy and x into (C, images * P) matrices, then ONE GEMM with K = images * P:
//             extra traffic 2 * (Cout_g + Cin_g) * P floats per image. Wins for small images and
//             wide layers (stage 4 at 7x7: 768 x 2304 weights vs 49 pixels).
// Images are processed in chunks that keep the scratch under scratch_floats(): 128 MiB, or an
// eighth of the device's memory on a small device.
#include <algorithm>

#include "kernels/cuda/conv2d_paths.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/gemm.h"

namespace nextvit::kernels::cuda::conv_paths {
namespace {

int64_t scratch_floats() {
  static const int64_t limit = [] {
    size_t free_bytes = 0, total_bytes = 0;
    NV_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), "reading the device's memory size");
    return std::min<int64_t>(int64_t(32) << 20, int64_t(total_bytes / 8 / sizeof(float)));
  }();
  return limit;
}

// dst (rows, images, P) <- src (images of `channels` channels, P) channels [c0, c0 + rows):
// a permute of the first two axes. Consecutive threads copy consecutive pixels: coalesced on
// both sides.
__global__ void gather_channels_kernel(int64_t rows, int64_t images, int64_t P, int64_t channels,
                                       int64_t c0, const float* __restrict__ src,
                                       float* __restrict__ dst) {
  const int64_t total = rows * images * P;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i % P, n = i / P % images, r = i / (P * images);
    dst[i] = src[(n * channels + c0 + r) * P + p];
  }
}

// out[e] (+)= sum over b < count of part[b * elems + e], in order b = 0, 1, ...
__global__ void sum_partials_kernel(int64_t elems, int64_t count, const float* __restrict__ part,
                                    bool accumulate, float* __restrict__ out) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < elems;
       e += int64_t(gridDim.x) * blockDim.x) {
    float s = accumulate ? out[e] : 0.0f;
    for (int64_t b = 0; b < count; ++b) s += part[b * elems + e];
    out[e] = s;
  }
}

struct Sizes {
  int64_t N, G, cin, cout, cin_g, cout_g, P;
  explicit Sizes(const Conv2dShape& s)
      : N(s.batch),
        G(s.groups),
        cin(s.in_channels),
        cout(s.out_channels),
        cin_g(s.in_channels / s.groups),
        cout_g(s.out_channels / s.groups),
        P(s.in_h * s.in_w) {}
};

}  // namespace

void pointwise_forward(const Conv2dShape& s, const float* x, const float* w, float* y) {
  const Sizes z(s);
  for (int64_t g = 0; g < z.G; ++g) {
    gemm_strided_batched(false, false, z.cout_g, z.P, z.cin_g, 1.0f, w + g * z.cout_g * z.cin_g,
                         z.cin_g, 0, x + g * z.cin_g * z.P, z.P, z.cin * z.P, 0.0f,
                         y + g * z.cout_g * z.P, z.P, z.cout * z.P, z.N);
  }
}

void pointwise_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
  const Sizes z(s);
  for (int64_t g = 0; g < z.G; ++g) {
    gemm_strided_batched(true, false, z.cin_g, z.P, z.cout_g, 1.0f, w + g * z.cout_g * z.cin_g,
                         z.cin_g, 0, dy + g * z.cout_g * z.P, z.P, z.cout * z.P, 0.0f,
                         dx + g * z.cin_g * z.P, z.P, z.cin * z.P, z.N);
  }
}

void pointwise_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw) {
  const Sizes z(s);
  const int64_t weights = z.cout_g * z.cin_g, pixels = (z.cout_g + z.cin_g) * z.P;
  const bool partials = weights <= pixels;
  const int64_t per_image = partials ? weights : pixels;
  const int64_t chunk = std::clamp<int64_t>(scratch_floats() / per_image, 1, z.N);
  float* scratch = static_cast<float*>(cuda_rt::workspace(size_t(chunk * per_image) * 4));
  for (int64_t g = 0; g < z.G; ++g) {
    float* dw_g = dw + g * weights;
    for (int64_t n0 = 0; n0 < z.N; n0 += chunk) {
      const int64_t nb = std::min(chunk, z.N - n0);
      const float* dy_n = dy + (n0 * z.cout + g * z.cout_g) * z.P;
      const float* x_n = x + (n0 * z.cin + g * z.cin_g) * z.P;
      if (partials) {
        // part[b] = dy_b (Cout_g, P) x_b^T (P, Cin_g)
        gemm_strided_batched(false, true, z.cout_g, z.cin_g, z.P, 1.0f, dy_n, z.P, z.cout * z.P,
                             x_n, z.P, z.cin * z.P, 0.0f, scratch, z.cin_g, weights, nb);
        NV_LAUNCH(grid_size(weights, 256), 256, 0, stream(), sum_partials_kernel)
        (weights, nb, scratch, n0 > 0, dw_g);
        NV_CUDA_CHECK_LAUNCH("conv2d 1x1 backward-weight: sum of {} partials of {}", nb, weights);
      } else {
        float* dyt = scratch;                       // (Cout_g, nb * P)
        float* xt = scratch + z.cout_g * nb * z.P;  // (Cin_g, nb * P)
        const int64_t ny = z.cout_g * nb * z.P, nx = z.cin_g * nb * z.P;
        NV_LAUNCH(grid_size(ny, 256), 256, 0, stream(), gather_channels_kernel)
        (z.cout_g, nb, z.P, z.cout, g * z.cout_g, dy + n0 * z.cout * z.P, dyt);
        NV_CUDA_CHECK_LAUNCH("conv2d 1x1 backward-weight: gather of dy ({} floats)", ny);
        NV_LAUNCH(grid_size(nx, 256), 256, 0, stream(), gather_channels_kernel)
        (z.cin_g, nb, z.P, z.cin, g * z.cin_g, x + n0 * z.cin * z.P, xt);
        NV_CUDA_CHECK_LAUNCH("conv2d 1x1 backward-weight: gather of x ({} floats)", nx);
        gemm(false, true, z.cout_g, z.cin_g, nb * z.P, 1.0f, dyt, nb * z.P, xt, nb * z.P,
             n0 > 0 ? 1.0f : 0.0f, dw_g, z.cin_g);
      }
    }
  }
}

}  // namespace nextvit::kernels::cuda::conv_paths
