// add, mul, scale, relu, sum, mean: the elementwise ops and their backward passes.
#include "kernels/elementwise.h"
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "kernels/dispatch.h"

namespace nextvit::ops {
namespace {

struct BinaryInputs {
  Tensor a, b;
  Device device;
};

// The two inputs of an elementwise binary op: f32, contiguous, one device, one shape.
BinaryInputs same_shape_inputs(const Variable& a, const Variable& b, const char* op) {
  Tensor ta = f32_input(a, op, "a"), tb = f32_input(b, op, "b");
  const Device dev = common_device({&a, &b}, op);
  NV_CHECK(ta.shape() == tb.shape(), "{}: shapes {} and {} differ", op, shape_str(ta.shape()),
           shape_str(tb.shape()));
  return {ta, tb, dev};
}

}  // namespace

Variable add(const Variable& a, const Variable& b) {
  profiler::OpScope scope(profiler::OpKind::Elementwise);
  const auto [ta, tb, dev] = same_shape_inputs(a, b, "add");
  Tensor out = new_f32(ta.shape(), dev);
  NV_DISPATCH(dev, add, out.numel(), ta.data<float>(), tb.data<float>(), out.data<float>());
  // d(a+b)/da = d(a+b)/db = 1: both inputs receive the output gradient itself.
  return make_result(out, {a, b}, "add", [](const Tensor& g) { return std::vector<Tensor>{g, g}; });
}

Variable mul(const Variable& a, const Variable& b) {
  profiler::OpScope scope(profiler::OpKind::Elementwise);
  const BinaryInputs in = same_shape_inputs(a, b, "mul");
  const Tensor ta = in.a, tb = in.b;
  const Device dev = in.device;
  Tensor out = new_f32(ta.shape(), dev);
  NV_DISPATCH(dev, mul, out.numel(), ta.data<float>(), tb.data<float>(), out.data<float>());
  return make_result(out, {a, b}, "mul", [ta, tb, dev](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor ga = new_f32(ta.shape(), dev), gb = new_f32(tb.shape(), dev);
    NV_DISPATCH(dev, mul, gc.numel(), gc.data<float>(), tb.data<float>(), ga.data<float>());
    NV_DISPATCH(dev, mul, gc.numel(), gc.data<float>(), ta.data<float>(), gb.data<float>());
    return std::vector<Tensor>{ga, gb};
  });
}

Variable scale(const Variable& x, float s) {
  profiler::OpScope scope(profiler::OpKind::Elementwise);
  Tensor tx = f32_input(x, "scale", "x");
  Tensor out = new_f32(tx.shape(), tx.device());
  NV_DISPATCH(tx.device(), scale, out.numel(), s, tx.data<float>(), out.data<float>());
  return make_result(out, {x}, "scale", [s](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor gx = new_f32(gc.shape(), gc.device());
    NV_DISPATCH(gc.device(), scale, gc.numel(), s, gc.data<float>(), gx.data<float>());
    return std::vector<Tensor>{gx};
  });
}

Variable relu(const Variable& x) {
  profiler::OpScope scope(profiler::OpKind::Elementwise);
  Tensor tx = f32_input(x, "relu", "x");
  Tensor y = new_f32(tx.shape(), tx.device());
  NV_DISPATCH(tx.device(), relu_forward, y.numel(), tx.data<float>(), y.data<float>());
  // The backward needs only the mask y > 0, so it keeps y (which the next op usually keeps
  // anyway) instead of x.
  return make_result(y, {x}, "relu", [y](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor gx = new_f32(gc.shape(), gc.device());
    NV_DISPATCH(gc.device(), relu_backward, gc.numel(), y.data<float>(), gc.data<float>(),
                gx.data<float>());
    return std::vector<Tensor>{gx};
  });
}

namespace {
// sum and mean share one forward and one backward: the gradient of every element is the
// output gradient times `factor`.
Variable reduce_all(const Variable& x, float factor, const char* op) {
  Tensor tx = f32_input(x, op, "x");
  Tensor out = new_f32({}, tx.device());
  NV_DISPATCH(tx.device(), sum, tx.numel(), tx.data<float>(), out.data<float>());
  if (factor != 1.0f) {
    NV_DISPATCH(tx.device(), scale, 1, factor, out.data<float>(), out.data<float>());
  }
  Shape in_shape = tx.shape();
  return make_result(out, {x}, op, [in_shape, factor](const Tensor& g) {
    // g holds one value; broadcast it (times factor) over the input's shape where it lives:
    // on a GPU, reading it back would make the host wait for the device.
    Tensor gc = g.contiguous();
    Tensor gx = new_f32(in_shape, gc.device());
    NV_DISPATCH(gc.device(), fill_scaled, gx.numel(), gc.data<float>(), factor, gx.data<float>());
    return std::vector<Tensor>{gx};
  });
}
}  // namespace

Variable sum(const Variable& x) {
  profiler::OpScope scope(profiler::OpKind::Elementwise);
  return reduce_all(x, 1.0f, "sum");
}

Variable mean(const Variable& x) {
  profiler::OpScope scope(profiler::OpKind::Elementwise);
  NV_CHECK(x.defined() && x.numel() > 0, "mean: input is empty");
  return reduce_all(x, 1.0f / static_cast<float>(x.numel()), "mean");
}

}  // namespace nextvit::ops
