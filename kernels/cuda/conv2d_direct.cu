// Direct convolution, any kernel size, stride, padding and groups, written for clarity: one
// thread per output element of each pass, each walking its whole window straight from device
// memory. It is the CUDA convolution when the build has no cuDNN, and a second, independent
// GPU reference for the tests. Slow (no data reuse beyond the caches) but exact: each sum runs
// in a fixed order.
#include "kernels/cuda/conv2d_paths.h"
#include "kernels/cuda/launch.cuh"

namespace nextvit::kernels::cuda::conv_paths {
namespace {

// The shape with int64 fields, passed by value to the kernels.
struct Geo {
  int64_t N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw, G, Ho, Wo, cin_g, cout_g;
};

Geo geo(const Conv2dShape& s) {
  return {s.batch,
          s.in_channels,
          s.in_h,
          s.in_w,
          s.out_channels,
          s.kernel_h,
          s.kernel_w,
          s.stride_h,
          s.stride_w,
          s.pad_h,
          s.pad_w,
          s.groups,
          s.out_h(),
          s.out_w(),
          s.in_channels / s.groups,
          s.out_channels / s.groups};
}

#define NV_GRID_STRIDE(i, n)                                                \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

// y[n, co, oh, ow] = sum over ci of the group, i, j of w[co, ci, i, j] x[n, ci, oh*sh-ph+i, ...]
__global__ void forward_kernel(Geo g, const float* __restrict__ x, const float* __restrict__ w,
                               float* __restrict__ y) {
  NV_GRID_STRIDE(e, g.N * g.Cout * g.Ho * g.Wo) {
    const int64_t ow = e % g.Wo, oh = e / g.Wo % g.Ho, co = e / (g.Wo * g.Ho) % g.Cout;
    const int64_t n = e / (g.Wo * g.Ho * g.Cout), grp = co / g.cout_g;
    float acc = 0.0f;
    for (int64_t c = 0; c < g.cin_g; ++c) {
      const float* xc = x + (n * g.Cin + grp * g.cin_g + c) * g.H * g.W;
      const float* wc = w + (co * g.cin_g + c) * g.kh * g.kw;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.ph + i;
        if (ih < 0 || ih >= g.H) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t iw = ow * g.sw - g.pw + j;
          if (iw >= 0 && iw < g.W) acc += wc[i * g.kw + j] * xc[ih * g.W + iw];
        }
      }
    }
    y[e] = acc;
  }
}

// dx[n, ci, ih, iw] = sum over the outputs (co, oh, ow) whose window covers (ih, iw): the
// gather form of the transposed convolution, so each dx element is written once.
__global__ void backward_data_kernel(Geo g, const float* __restrict__ dy,
                                     const float* __restrict__ w, float* __restrict__ dx) {
  NV_GRID_STRIDE(e, g.N * g.Cin * g.H * g.W) {
    const int64_t iw = e % g.W, ih = e / g.W % g.H, ci = e / (g.W * g.H) % g.Cin;
    const int64_t n = e / (g.W * g.H * g.Cin), grp = ci / g.cin_g, c = ci % g.cin_g;
    float acc = 0.0f;
    for (int64_t k = 0; k < g.cout_g; ++k) {
      const int64_t co = grp * g.cout_g + k;
      const float* dyc = dy + (n * g.Cout + co) * g.Ho * g.Wo;
      const float* wc = w + (co * g.cin_g + c) * g.kh * g.kw;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t th = ih + g.ph - i;  // = oh * sh
        if (th < 0 || th % g.sh != 0 || th / g.sh >= g.Ho) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t tw = iw + g.pw - j;
          if (tw < 0 || tw % g.sw != 0 || tw / g.sw >= g.Wo) continue;
          acc += wc[i * g.kw + j] * dyc[(th / g.sh) * g.Wo + tw / g.sw];
        }
      }
    }
    dx[e] = acc;
  }
}

// One block per weight element: its threads split the (n, oh, ow) sum, then block_sum.
__global__ void backward_weight_kernel(Geo g, const float* __restrict__ x,
                                       const float* __restrict__ dy, float* __restrict__ dw) {
  const int64_t e = blockIdx.x;  // (co, c, i, j)
  const int64_t j = e % g.kw, i = e / g.kw % g.kh, c = e / (g.kw * g.kh) % g.cin_g;
  const int64_t co = e / (g.kw * g.kh * g.cin_g), grp = co / g.cout_g;
  float acc = 0.0f;
  for (int64_t q = threadIdx.x; q < g.N * g.Ho * g.Wo; q += blockDim.x) {
    const int64_t ow = q % g.Wo, oh = q / g.Wo % g.Ho, n = q / (g.Wo * g.Ho);
    const int64_t ih = oh * g.sh - g.ph + i, iw = ow * g.sw - g.pw + j;
    if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
    acc += dy[((n * g.Cout + co) * g.Ho + oh) * g.Wo + ow] *
           x[((n * g.Cin + grp * g.cin_g + c) * g.H + ih) * g.W + iw];
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) dw[e] = acc;
}

#undef NV_GRID_STRIDE

}  // namespace

void direct_forward(const Conv2dShape& s, const float* x, const float* w, float* y) {
  const Geo g = geo(s);
  const int64_t n = g.N * g.Cout * g.Ho * g.Wo;
  NV_LAUNCH(grid_size(n, 256), 256, 0, stream(), forward_kernel)(g, x, w, y);
  NV_CUDA_CHECK_LAUNCH("conv2d forward (direct) for input ({}, {}, {}, {})", g.N, g.Cin, g.H, g.W);
}

void direct_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
  const Geo g = geo(s);
  const int64_t n = g.N * g.Cin * g.H * g.W;
  NV_LAUNCH(grid_size(n, 256), 256, 0, stream(), backward_data_kernel)(g, dy, w, dx);
  NV_CUDA_CHECK_LAUNCH("conv2d backward-data (direct) for input ({}, {}, {}, {})", g.N, g.Cin, g.H,
                       g.W);
}

void direct_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw) {
  const Geo g = geo(s);
  const int64_t weights = g.Cout * g.cin_g * g.kh * g.kw;
  NV_CHECK(weights <= 0x7fffffff, "conv2d backward-weight (direct): {} weights exceed the grid",
           weights);
  NV_LAUNCH(unsigned(weights), 256, 0, stream(), backward_weight_kernel)(g, x, dy, dw);
  NV_CUDA_CHECK_LAUNCH("conv2d backward-weight (direct) for input ({}, {}, {}, {})", g.N, g.Cin,
                       g.H, g.W);
}

}  // namespace nextvit::kernels::cuda::conv_paths
