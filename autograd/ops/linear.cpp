// linear: y = x W^T + b over the last dimension of x, as one matrix product on the flattened
// rows of x. The bias is added, and its gradient summed, by rank-1 products with a vector of
// ones, so the op needs nothing but kernels::gemm on either device.
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"

namespace nextvit::ops {

Variable linear(const Variable& x, const Variable& weight, const Variable& bias) {
  profiler::OpScope scope(profiler::OpKind::Gemm);
  Tensor tx = f32_input(x, "linear", "x"), tw = f32_input(weight, "linear", "weight");
  Tensor tb = bias.defined() ? f32_input(bias, "linear", "bias") : Tensor();
  const Device dev = common_device({&x, &weight, &bias}, "linear");
  NV_CHECK(tw.dim() == 2, "linear: weight must be (out, in), got {}", shape_str(tw.shape()));
  NV_CHECK(tx.dim() >= 1, "linear: x must have at least one dimension, got a scalar");
  const int64_t out = tw.size(0), in = tw.size(1);
  NV_CHECK(out > 0 && in > 0, "linear: weight {} is empty", shape_str(tw.shape()));
  NV_CHECK(tx.size(-1) == in, "linear: weight {} expects {} input features, x {} has {}",
           shape_str(tw.shape()), in, shape_str(tx.shape()), tx.size(-1));
  if (tb.defined()) {
    NV_CHECK(tb.dim() == 1 && tb.size(0) == out,
             "linear: bias must have shape {} to match weight {}, got {}", shape_str({out}),
             shape_str(tw.shape()), shape_str(tb.shape()));
  }
  const int64_t rows = tx.numel() / in;  // every leading dimension flattened
  Shape out_shape = tx.shape();
  out_shape.back() = out;
  Tensor y = new_f32(out_shape, dev);

  // y (rows, out) = x (rows, in) W^T, then y += ones (rows, 1) b (1, out).
  NV_DISPATCH(dev, gemm, false, true, rows, out, in, 1.0f, tx.data<float>(), in, tw.data<float>(),
              in, 0.0f, y.data<float>(), out);
  // Kept for the bias gradient too.
  Tensor ones;
  if (tb.defined() && rows > 0) {
    ones = Tensor::ones({rows}, DType::F32, dev);
    NV_DISPATCH(dev, gemm, false, false, rows, out, 1, 1.0f, ones.data<float>(), 1,
                tb.data<float>(), out, 1.0f, y.data<float>(), out);
  }

  const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  Tensor saved_x = need_w ? tx : Tensor(), saved_w = need_x ? tw : Tensor();
  Shape x_shape = tx.shape();
  return make_result(y, {x, weight, bias}, "linear", [=](const Tensor& g) {
    Tensor dy = g.contiguous();
    Tensor dx, dw, db;
    if (need_x) {  // dx (rows, in) = dy (rows, out) W (out, in)
      dx = new_f32(x_shape, dev);
      NV_DISPATCH(dev, gemm, false, false, rows, in, out, 1.0f, dy.data<float>(), out,
                  saved_w.data<float>(), in, 0.0f, dx.data<float>(), in);
    }
    if (need_w) {  // dW (out, in) = dy^T (out, rows) x (rows, in)
      dw = new_f32({out, in}, dev);
      NV_DISPATCH(dev, gemm, true, false, out, in, rows, 1.0f, dy.data<float>(), out,
                  saved_x.data<float>(), in, 0.0f, dw.data<float>(), in);
    }
    if (need_b && rows == 0) {
      db = Tensor::zeros({out}, DType::F32, dev);
    } else if (need_b) {  // db (1, out) = ones (1, rows) dy (rows, out)
      db = new_f32({out}, dev);
      NV_DISPATCH(dev, gemm, false, false, 1, out, rows, 1.0f, ones.data<float>(), rows,
                  dy.data<float>(), out, 0.0f, db.data<float>(), out);
    }
    return std::vector<Tensor>{dx, dw, db};
  });
}

}  // namespace nextvit::ops
