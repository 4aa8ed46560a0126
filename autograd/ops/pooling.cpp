// avg_pool2d, avg_pool1d and global_avg_pool with their backward passes. avg_pool1d is the 2-D
// kernel on planes of height 1, as PyTorch implements nn.AvgPool1d.
#include "kernels/pooling.h"
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "kernels/dispatch.h"

namespace nextvit::ops {
namespace {

// Runs the pooling kernel described by s over x (already checked) and records its backward.
Variable run_avg_pool(const Variable& x, const Tensor& tx, const kernels::AvgPool2dShape& s,
                      const Shape& out_shape, const char* op) {
  const Device dev = tx.device();
  Tensor y = new_f32(out_shape, dev);
  NV_DISPATCH(dev, avg_pool2d_forward, s, tx.data<float>(), y.data<float>());
  // The backward needs only the geometry: every input cell gets the sum of dy / divisor over
  // the windows that contain it.
  const Shape in_shape = tx.shape();
  return make_result(y, {x}, op, [s, in_shape, dev](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = new_f32(in_shape, dev);
    NV_DISPATCH(dev, avg_pool2d_backward, s, gc.data<float>(), dx.data<float>());
    return std::vector<Tensor>{dx};
  });
}

}  // namespace

Variable avg_pool2d(const Variable& x, const AvgPool2dOptions& o) {
  profiler::OpScope scope(profiler::OpKind::Pooling);
  const char* op = "avg_pool2d";
  Tensor tx = f32_input(x, op, "x");
  NV_CHECK(tx.dim() == 4, "{}: expected input (N, C, H, W), got {}", op, shape_str(tx.shape()));
  NV_CHECK(o.kernel > 0 && o.stride > 0, "{}: kernel {} and stride {} must be positive", op,
           o.kernel, o.stride);
  NV_CHECK(o.padding >= 0 && o.padding <= o.kernel / 2,
           "{}: padding {} must be between 0 and half the kernel {}", op, o.padding, o.kernel);
  kernels::AvgPool2dShape s;
  s.planes = tx.size(0) * tx.size(1);
  s.in_h = tx.size(2);
  s.in_w = tx.size(3);
  s.kernel_h = s.kernel_w = o.kernel;
  s.stride_h = s.stride_w = o.stride;
  s.pad_h = s.pad_w = o.padding;
  s.count_include_pad = o.count_include_pad;
  s.out_h = kernels::pooled_size(s.in_h, o.kernel, o.stride, o.padding, o.ceil_mode);
  s.out_w = kernels::pooled_size(s.in_w, o.kernel, o.stride, o.padding, o.ceil_mode);
  NV_CHECK(s.out_h > 0 && s.out_w > 0,
           "{}: a {}x{} window with stride {} and padding {} does not fit input {} (output would "
           "be {}x{})",
           op, o.kernel, o.kernel, o.stride, o.padding, shape_str(tx.shape()), s.out_h, s.out_w);
  return run_avg_pool(x, tx, s, {tx.size(0), tx.size(1), s.out_h, s.out_w}, op);
}

Variable avg_pool1d(const Variable& x, int64_t kernel, int64_t stride) {
  profiler::OpScope scope(profiler::OpKind::Pooling);
  const char* op = "avg_pool1d";
  Tensor tx = f32_input(x, op, "x");
  NV_CHECK(tx.dim() == 3, "{}: expected input (N, C, L), got {}", op, shape_str(tx.shape()));
  NV_CHECK(kernel > 0 && stride > 0, "{}: kernel {} and stride {} must be positive", op, kernel,
           stride);
  NV_CHECK(tx.size(2) >= kernel, "{}: kernel {} is larger than the {} positions of input {}", op,
           kernel, tx.size(2), shape_str(tx.shape()));
  kernels::AvgPool2dShape s;
  s.planes = tx.size(0) * tx.size(1);
  s.in_h = 1;
  s.in_w = tx.size(2);
  s.kernel_w = kernel;
  s.stride_w = stride;
  s.out_h = 1;
  s.out_w = kernels::pooled_size(s.in_w, kernel, stride, 0, /*ceil_mode=*/false);
  return run_avg_pool(x, tx, s, {tx.size(0), tx.size(1), s.out_w}, op);
}

Variable global_avg_pool(const Variable& x) {
  profiler::OpScope scope(profiler::OpKind::Pooling);
  const char* op = "global_avg_pool";
  Tensor tx = f32_input(x, op, "x");
  NV_CHECK(tx.dim() == 4 && tx.size(2) * tx.size(3) > 0,
           "{}: expected a non-empty input (N, C, H, W), got {}", op, shape_str(tx.shape()));
  const Device dev = tx.device();
  const int64_t rows = tx.size(0) * tx.size(1), cols = tx.size(2) * tx.size(3);
  Tensor y = new_f32({tx.size(0), tx.size(1)}, dev);
  NV_DISPATCH(dev, global_avg_pool_forward, rows, cols, tx.data<float>(), y.data<float>());
  const Shape in_shape = tx.shape();
  return make_result(y, {x}, op, [in_shape, rows, cols, dev](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = new_f32(in_shape, dev);
    NV_DISPATCH(dev, global_avg_pool_backward, rows, cols, gc.data<float>(), dx.data<float>());
    return std::vector<Tensor>{dx};
  });
}

}  // namespace nextvit::ops
