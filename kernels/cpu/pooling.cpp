// CPU average pooling (kernels/pooling.h). Planes (one per image and channel) are independent,
// so threads split the planes; within a plane the forward gathers each window into its output
// and the backward scatters each output gradient back over its window, which never crosses into
// another plane and so needs no atomics. Both work one output row at a time through a row
// buffer, so that the loops over input rows are contiguous and vectorise.
#include <algorithm>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/pooling.h"

namespace nextvit::kernels::cpu {
namespace {

// The windows along one axis, computed once per call rather than per output cell: output o
// covers [lo, hi) of the input, and `padded` positions of the padded input (see
// kernels/pooling.h: the divisor counts those with count_include_pad).
struct Span {
  int64_t lo, hi, padded;
};

std::vector<Span> spans(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad) {
  std::vector<Span> v(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * stride - pad, end = std::min(start + kernel, in + pad);
    v[o] = {std::max<int64_t>(start, 0), std::min(end, in), end - start};
  }
  return v;
}

// The divisor of each output cell, or 0 for a window without input cells (PyTorch writes 0
// there, and its gradient goes nowhere). Both passes divide by it, as PyTorch does, rather than
// multiply by a reciprocal that would differ in the last bit.
std::vector<float> divisors(const AvgPool2dShape& s, const std::vector<Span>& rows,
                            const std::vector<Span>& cols) {
  std::vector<float> d(static_cast<size_t>(s.out_h * s.out_w));
  for (int64_t oh = 0; oh < s.out_h; ++oh) {
    for (int64_t ow = 0; ow < s.out_w; ++ow) {
      const Span& r = rows[oh];
      const Span& c = cols[ow];
      const int64_t real = std::max<int64_t>(0, r.hi - r.lo) * std::max<int64_t>(0, c.hi - c.lo);
      d[oh * s.out_w + ow] =
          real == 0 ? 0.0f : static_cast<float>(s.count_include_pad ? r.padded * c.padded : real);
    }
  }
  return d;
}

// Both directions walk the same windows: per axis the spans, per output cell its divisor.
struct Windows {
  explicit Windows(const AvgPool2dShape& s)
      : rows(spans(s.in_h, s.out_h, s.kernel_h, s.stride_h, s.pad_h)),
        cols(spans(s.in_w, s.out_w, s.kernel_w, s.stride_w, s.pad_w)),
        div(divisors(s, rows, cols)) {}
  std::vector<Span> rows, cols;
  std::vector<float> div;
};

// Calls body(in_offset, out_offset, row) for every plane, planes split over threads; `row` is
// the thread's buffer of in_w floats.
template <typename Body>
void for_each_plane(const AvgPool2dShape& s, Body body) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  parallel_for(s.planes, grain_for(s.in_h * s.in_w), [&](int64_t lo, int64_t hi) {
    std::vector<float> row(static_cast<size_t>(s.in_w));
    for (int64_t p = lo; p < hi; ++p) body(p * in_plane, p * out_plane, row.data());
  });
}

// Windows that tile the input exactly -- no padding, stride == kernel, none clipped -- as in
// Next-ViT's stride-2 patch embeddings (2 x 2) and E-MHSA's token pooling (1 x sr^2): every
// divisor is kernel_h * kernel_w, and the window sums of a row of outputs run output-minor (the
// j-th cell of every window, then the (j+1)-th), which vectorises where the generic loop sums
// one window at a time. Each output still adds its cells in the generic order, starting from
// 0.0f, and divides by the same divisor: the same bits (a window of -0.0 gives +0.0 either way).
// Measured on the model's batch-1 shapes (2 threads, Zen 5): 2 x 2 at 56 x 56 x 96 planes
// 92 -> 33 us, 28 x 28 x 256 76 -> 40 us, 14 x 14 x 512 50 -> 37 us; 1 x 4 over 196 tokens
// x 384 29 -> 18 us; 1 x 16 over 784 x 192 unchanged (28 us).
bool tiles_exactly(const AvgPool2dShape& s) {
  return s.pad_h == 0 && s.pad_w == 0 && s.stride_h == s.kernel_h && s.stride_w == s.kernel_w &&
         s.out_h * s.kernel_h <= s.in_h && s.out_w * s.kernel_w <= s.in_w;
}

void avg_pool2d_tiled(const AvgPool2dShape& s, const float* x, float* y) {
  const int64_t kh = s.kernel_h, kw = s.kernel_w, used_w = s.out_w * kw;
  const float d = static_cast<float>(kh * kw);
  for_each_plane(s, [&](int64_t in_off, int64_t out_off, float* row_sum) {
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      std::fill_n(row_sum, used_w, 0.0f);
      for (int64_t ih = oh * kh; ih < (oh + 1) * kh; ++ih) {
        const float* xr = x + in_off + ih * s.in_w;
        for (int64_t iw = 0; iw < used_w; ++iw) row_sum[iw] += xr[iw];
      }
      float* yr = y + out_off + oh * s.out_w;
      // 2 x 2 spelled out: the compiler turns the pairs into vector shuffles; the general
      // strided loop below took 1.6-3x as long at the patch embeddings' sizes.
      if (kw == 2) {
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          yr[ow] = ((0.0f + row_sum[2 * ow]) + row_sum[2 * ow + 1]) / d;
        }
        continue;
      }
      std::fill_n(yr, s.out_w, 0.0f);
      for (int64_t j = 0; j < kw; ++j) {
        for (int64_t ow = 0; ow < s.out_w; ++ow) yr[ow] += row_sum[ow * kw + j];
      }
      for (int64_t ow = 0; ow < s.out_w; ++ow) yr[ow] /= d;
    }
  });
}

}  // namespace

void avg_pool2d_forward(const AvgPool2dShape& s, const float* x, float* y) {
  if (tiles_exactly(s)) {
    avg_pool2d_tiled(s, x, y);
    return;
  }
  const Windows win(s);
  // The window sum is separable: first add the window's input rows into one row (contiguous,
  // vectorised), then sum each window's columns of that row.
  for_each_plane(s, [&](int64_t in_off, int64_t out_off, float* row_sum) {
    const float* xp = x + in_off;
    float* yp = y + out_off;
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      const Span& r = win.rows[oh];
      std::fill_n(row_sum, s.in_w, 0.0f);
      for (int64_t ih = r.lo; ih < r.hi; ++ih) {
        const float* xr = xp + ih * s.in_w;
        for (int64_t iw = 0; iw < s.in_w; ++iw) row_sum[iw] += xr[iw];
      }
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        const Span& c = win.cols[ow];
        const float d = win.div[oh * s.out_w + ow];
        float sum = 0.0f;
        for (int64_t iw = c.lo; iw < c.hi; ++iw) sum += row_sum[iw];
        yp[oh * s.out_w + ow] = d == 0.0f ? 0.0f : sum / d;
      }
    }
  });
}

void avg_pool2d_backward(const AvgPool2dShape& s, const float* dy, float* dx) {
  const Windows win(s);
  // The transpose of the forward: spread one output row's dy / divisor along the columns of
  // its windows into one row, then add that row to each input row of the window.
  for_each_plane(s, [&](int64_t in_off, int64_t out_off, float* row_grad) {
    float* dxp = dx + in_off;
    const float* dyp = dy + out_off;
    std::fill_n(dxp, s.in_h * s.in_w, 0.0f);
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      const Span& r = win.rows[oh];
      std::fill_n(row_grad, s.in_w, 0.0f);
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        const Span& c = win.cols[ow];
        const float d = win.div[oh * s.out_w + ow];
        if (d == 0.0f) continue;
        const float g = dyp[oh * s.out_w + ow] / d;
        for (int64_t iw = c.lo; iw < c.hi; ++iw) row_grad[iw] += g;
      }
      for (int64_t ih = r.lo; ih < r.hi; ++ih) {
        float* dxr = dxp + ih * s.in_w;
        for (int64_t iw = 0; iw < s.in_w; ++iw) dxr[iw] += row_grad[iw];
      }
    }
  });
}

void global_avg_pool_forward(int64_t rows, int64_t cols, const float* x, float* y) {
  parallel_for(rows, grain_for(cols), [&](int64_t lo, int64_t hi) {
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
  parallel_for(rows, grain_for(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      std::fill_n(dx + r * cols, cols, dy[r] / static_cast<float>(cols));
    }
  });
}

}  // namespace nextvit::kernels::cpu
