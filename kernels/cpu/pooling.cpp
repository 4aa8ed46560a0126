// CPU average pooling (kernels/pooling.h). Planes (one per image and channel) are independent,
// so threads split the planes; within a plane the forward gathers each window into its output
// and the backward scatters each output gradient back over its window, which never crosses into
// another plane and so needs no atomics.
#include <algorithm>

#include "kernels/cpu/parallel.h"
#include "kernels/pooling.h"

namespace nextvit::kernels::cpu {
namespace {

// One output cell's window, clipped to the input, and its divisor (see kernels/pooling.h).
struct Window {
  int64_t h0, h1, w0, w1;
  float divisor;
  bool empty() const { return h0 >= h1 || w0 >= w1; }
};

inline Window window(const AvgPool2dShape& s, int64_t oh, int64_t ow) {
  int64_t h0 = oh * s.stride_h - s.pad_h, w0 = ow * s.stride_w - s.pad_w;
  int64_t h1 = std::min(h0 + s.kernel_h, s.in_h + s.pad_h);
  int64_t w1 = std::min(w0 + s.kernel_w, s.in_w + s.pad_w);
  const int64_t padded_size = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, s.in_h);
  w1 = std::min(w1, s.in_w);
  const int64_t size = s.count_include_pad ? padded_size : (h1 - h0) * (w1 - w0);
  return {h0, h1, w0, w1, static_cast<float>(size)};
}

// Planes per thread chunk: about kElementwiseGrain input values each.
int64_t plane_grain(const AvgPool2dShape& s) {
  const int64_t per_plane = std::max<int64_t>(1, s.in_h * s.in_w);
  return std::max<int64_t>(1, kElementwiseGrain / per_plane);
}

}  // namespace

void avg_pool2d_forward(const AvgPool2dShape& s, const float* x, float* y) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  parallel_for(s.planes, plane_grain(s), [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      const float* xp = x + p * in_plane;
      float* yp = y + p * out_plane;
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          const Window w = window(s, oh, ow);
          if (w.empty()) {
            yp[oh * s.out_w + ow] = 0.0f;
            continue;
          }
          float sum = 0.0f;
          for (int64_t ih = w.h0; ih < w.h1; ++ih) {
            for (int64_t iw = w.w0; iw < w.w1; ++iw) sum += xp[ih * s.in_w + iw];
          }
          yp[oh * s.out_w + ow] = sum / w.divisor;
        }
      }
    }
  });
}

void avg_pool2d_backward(const AvgPool2dShape& s, const float* dy, float* dx) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  parallel_for(s.planes, plane_grain(s), [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      float* dxp = dx + p * in_plane;
      const float* dyp = dy + p * out_plane;
      std::fill_n(dxp, in_plane, 0.0f);
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          const Window w = window(s, oh, ow);
          if (w.empty()) continue;
          const float g = dyp[oh * s.out_w + ow] / w.divisor;
          for (int64_t ih = w.h0; ih < w.h1; ++ih) {
            for (int64_t iw = w.w0; iw < w.w1; ++iw) dxp[ih * s.in_w + iw] += g;
          }
        }
      }
    }
  });
}

void global_avg_pool_forward(int64_t rows, int64_t cols, const float* x, float* y) {
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, cols));
  parallel_for(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      // Eight float lanes keep the loop vectorised; a row is at most a few thousand values
      // (56 x 56), well within float's accuracy for a mean.
      float lanes[8] = {};
      const float* xr = x + r * cols;
      int64_t i = 0;
      for (; i + 8 <= cols; i += 8) {
        for (int j = 0; j < 8; ++j) lanes[j] += xr[i + j];
      }
      double sum = 0.0;
      for (; i < cols; ++i) sum += xr[i];
      for (float l : lanes) sum += l;
      y[r] = static_cast<float>(sum / static_cast<double>(cols));
    }
  });
}

void global_avg_pool_backward(int64_t rows, int64_t cols, const float* dy, float* dx) {
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, cols));
  parallel_for(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      std::fill_n(dx + r * cols, cols, dy[r] / static_cast<float>(cols));
    }
  });
}

}  // namespace nextvit::kernels::cpu
