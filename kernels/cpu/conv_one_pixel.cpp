// Convolutions of one-pixel maps (kernels/cpu/conv_one_pixel.h).
//
// How data moves. With a 1 x 1 input and a 1 x 1 output, output (0, 0) reads input (i - ph,
// j - pw) through tap (i, j): only tap (ph, pw) lands on the pixel, every other one reads the
// padding. x (N, Cin, 1, 1) is the (N, Cin) matrix of the images' channels, y is (N, Cout), and
// with Wt_g (cout_g, cin_g) the reading tap of group g's weights,
//
//   forward          y[:, g]  = x[:, g] Wt_g^T             (N x cin_g) (cin_g x cout_g)
//   backward data    dx[:, g] = dy[:, g] Wt_g              (N x cout_g) (cout_g x cin_g)
//   backward weight  dWt_g    = dy[:, g]^T x[:, g]         (cout_g x N) (N x cin_g)
//
// where [:, g] is the group's block of columns, read in place with the row stride C: one
// strided-batched GEMM over the groups for each direction. The weight gradient of every other
// tap is 0. The general path (kernels/cpu/conv2d.cpp) computes the same sums with k*k - 1 zero
// terms more per input channel, after gathering the images' single floats side by side.
#include "kernels/cpu/conv_one_pixel.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"

namespace nextvit::kernels::cpu {
namespace {

std::atomic<bool> g_enabled{true};

struct OnePixel {
  explicit OnePixel(const Conv2dShape& s)
      : groups(s.groups),
        cin_g(s.in_channels / s.groups),
        cout_g(s.out_channels / s.groups),
        taps(s.kernel_h * s.kernel_w),
        tap(s.pad_h * s.kernel_w + s.pad_w) {}
  int64_t groups, cin_g, cout_g, taps, tap;
};

// The reading tap of every filter, (Cout, cin_g): the weights themselves for a 1x1 kernel, else
// a copy into `buf`.
const float* reading_tap(const OnePixel& o, const float* w, std::vector<float>& buf) {
  if (o.taps == 1) return w;
  const int64_t n = o.groups * o.cout_g * o.cin_g;
  buf.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) buf[size_t(i)] = w[i * o.taps + o.tap];
  return buf.data();
}

}  // namespace

bool set_conv_one_pixel(bool enabled) {
  return g_enabled.exchange(enabled);
}

bool conv_one_pixel_applies(const Conv2dShape& s) {
  return g_enabled.load(std::memory_order_relaxed) && s.in_h == 1 && s.in_w == 1 &&
         s.out_h() == 1 && s.out_w() == 1 && s.pad_h < s.kernel_h && s.pad_w < s.kernel_w &&
         s.batch >= 1;
}

void conv_one_pixel_forward(const Conv2dShape& s, const float* x, const float* w,
                            const ConvOutputPass& pass, float* y) {
  const OnePixel o(s);
  std::vector<float> buf;
  const float* wt = reading_tap(o, w, buf);
  const int64_t N = s.batch, cin = s.in_channels, cout = s.out_channels;
  gemm_strided_batched(false, true, N, o.cout_g, o.cin_g, 1.0f, x, cin, o.cin_g, wt, o.cin_g,
                       o.cout_g * o.cin_g, 0.0f, y, cout, o.cout_g, o.groups);
  if (pass.needed()) {
    parallel_for(N, grain_for(cout), [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) pass.run_across(0, y + n * cout, y + n * cout, cout);
    });
  }
}

void conv_one_pixel_backward_data(const Conv2dShape& s, const float* dy, const float* w,
                                  float* dx) {
  const OnePixel o(s);
  std::vector<float> buf;
  const float* wt = reading_tap(o, w, buf);
  gemm_strided_batched(false, false, s.batch, o.cin_g, o.cout_g, 1.0f, dy, s.out_channels, o.cout_g,
                       wt, o.cin_g, o.cout_g * o.cin_g, 0.0f, dx, s.in_channels, o.cin_g, o.groups);
}

void conv_one_pixel_backward_weight(const Conv2dShape& s, const float* x, const float* dy,
                                    float* dw) {
  const OnePixel o(s);
  const int64_t filters = s.out_channels * o.cin_g;
  // A 1x1 kernel's gradient is the tap's; a larger kernel's tap goes into a buffer first.
  std::vector<float> buf(static_cast<size_t>(o.taps == 1 ? 0 : filters));
  float* dwt = o.taps == 1 ? dw : buf.data();
  gemm_strided_batched(true, false, o.cout_g, o.cin_g, s.batch, 1.0f, dy, s.out_channels, o.cout_g,
                       x, s.in_channels, o.cin_g, 0.0f, dwt, o.cin_g, o.cout_g * o.cin_g, o.groups);
  if (o.taps == 1) return;
  std::fill(dw, dw + filters * o.taps, 0.0f);
  for (int64_t i = 0; i < filters; ++i) dw[i * o.taps + o.tap] = dwt[i];
}

}  // namespace nextvit::kernels::cpu
