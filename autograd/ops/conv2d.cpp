// conv2d: checks the shapes, runs kernels/conv2d on the inputs' device, and records the
// backward (input gradient, weight gradient, bias gradient) computed only for the inputs that
// require one.
#include "kernels/conv2d.h"
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "autograd/ops/conv2d_impl.h"
#include "kernels/dispatch.h"

namespace nextvit::ops {
namespace {

// Scratch for the kernels, when the backend asks for any (the CPU one does not).
Tensor workspace(const kernels::Conv2dShape& s, Device dev) {
  int64_t floats = 0;
  NV_DISPATCH(dev, conv2d_workspace_floats, s, &floats);
  return floats > 0 ? new_f32({floats}, dev) : Tensor();
}

}  // namespace

namespace detail {

kernels::Conv2dShape conv2d_shape(const Tensor& tx, const Tensor& tw, const Tensor& tb,
                                  const Conv2dOptions& options) {
  const std::string xs = shape_str(tx.shape()), ws = shape_str(tw.shape());
  NV_CHECK(tx.dim() == 4, "conv2d: input must be (N, C, H, W), got {}", xs);
  NV_CHECK(tw.dim() == 4, "conv2d: weight must be (Cout, Cin/groups, kh, kw), got {}", ws);
  const Conv2dOptions& o = options;
  NV_CHECK(o.stride_h >= 1 && o.stride_w >= 1 && o.pad_h >= 0 && o.pad_w >= 0 && o.groups >= 1,
           "conv2d: stride ({}, {}) must be >= 1, padding ({}, {}) >= 0 and groups {} >= 1",
           o.stride_h, o.stride_w, o.pad_h, o.pad_w, o.groups);
  const int64_t N = tx.size(0), Cin = tx.size(1), H = tx.size(2), W = tx.size(3);
  const int64_t Cout = tw.size(0), kh = tw.size(2), kw = tw.size(3);
  NV_CHECK(N > 0 && Cin > 0 && H > 0 && W > 0, "conv2d: input {} is empty", xs);
  NV_CHECK(Cout > 0 && kh > 0 && kw > 0 && tw.size(1) > 0, "conv2d: weight {} is empty", ws);
  NV_CHECK(Cin % o.groups == 0, "conv2d: {} groups do not divide the {} channels of input {}",
           o.groups, Cin, xs);
  NV_CHECK(Cout % o.groups == 0,
           "conv2d: {} groups do not divide the {} output channels of weight {}", o.groups, Cout,
           ws);
  NV_CHECK(tw.size(1) == Cin / o.groups,
           "conv2d: weight {} expects {} input channels per group, input {} has {}", ws, tw.size(1),
           xs, Cin / o.groups);
  NV_CHECK(H + 2 * o.pad_h >= kh && W + 2 * o.pad_w >= kw,
           "conv2d: kernel {}x{} is larger than the padded input {}x{} (input {}, padding {})", kh,
           kw, H + 2 * o.pad_h, W + 2 * o.pad_w, xs, shape_str({o.pad_h, o.pad_w}));
  if (tb.defined()) {
    NV_CHECK(tb.dim() == 1 && tb.size(0) == Cout,
             "conv2d: bias must have shape {} to match weight {}, got {}", shape_str({Cout}), ws,
             shape_str(tb.shape()));
  }

  kernels::Conv2dShape s;
  s.batch = N;
  s.in_channels = Cin;
  s.in_h = H;
  s.in_w = W;
  s.out_channels = Cout;
  s.kernel_h = kh;
  s.kernel_w = kw;
  s.stride_h = o.stride_h;
  s.stride_w = o.stride_w;
  s.pad_h = o.pad_h;
  s.pad_w = o.pad_w;
  s.groups = o.groups;

  return s;
}

profiler::OpKind conv_op_kind(const Variable& weight, const Conv2dOptions& o) {
  if (!weight.defined() || weight.dim() != 4) return profiler::OpKind::Conv;
  return profiler::conv_kind(o.groups, weight.size(2), weight.size(3));
}

}  // namespace detail

Variable conv2d(const Variable& x, const Variable& weight, const Variable& bias,
                const Conv2dOptions& options) {
  profiler::OpScope scope(detail::conv_op_kind(weight, options));
  Tensor tx = f32_input(x, "conv2d", "x"), tw = f32_input(weight, "conv2d", "weight");
  Tensor tb = bias.defined() ? f32_input(bias, "conv2d", "bias") : Tensor();
  const Device dev = common_device({&x, &weight, &bias}, "conv2d");
  const kernels::Conv2dShape s = detail::conv2d_shape(tx, tw, tb, options);

  Tensor y = new_f32({s.batch, s.out_channels, s.out_h(), s.out_w()}, dev);
  {
    Tensor ws_buf = workspace(s, dev);
    NV_DISPATCH(dev, conv2d_forward, s, tx.data<float>(), tw.data<float>(), f32_or_null(tb),
                y.data<float>(), f32_or_null(ws_buf));
  }

  // The input gradient needs the weight, the weight gradient needs the input: keep only what
  // the inputs that require a gradient will use.
  const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  Tensor saved_x = need_w ? tx : Tensor(), saved_w = need_x ? tw : Tensor();
  // Derivation: docs/derivations.md#grouped-convolution-backward
  return make_result(
      y, {x, weight, bias}, "conv2d",
      [s, dev, need_x, need_w, need_b, saved_x, saved_w](const Tensor& g) {
        Tensor dy = g.contiguous();
        Tensor ws_buf = workspace(s, dev);
        Tensor dx, dw, db;
        if (need_x) {
          dx = new_f32({s.batch, s.in_channels, s.in_h, s.in_w}, dev);
          NV_DISPATCH(dev, conv2d_backward_data, s, dy.data<float>(), saved_w.data<float>(),
                      dx.data<float>(), f32_or_null(ws_buf));
        }
        if (need_w || need_b) {
          // One call gives both; a null dw asks for the bias gradient alone (no input needed).
          if (need_w) {
            dw = new_f32({s.out_channels, s.in_channels / s.groups, s.kernel_h, s.kernel_w}, dev);
          }
          if (need_b) db = new_f32({s.out_channels}, dev);
          NV_DISPATCH(dev, conv2d_backward_weight, s, need_w ? saved_x.data<float>() : nullptr,
                      dy.data<float>(), f32_or_null(dw), f32_or_null(db), f32_or_null(ws_buf));
        }
        return std::vector<Tensor>{dx, dw, db};
      });
}

}  // namespace nextvit::ops
