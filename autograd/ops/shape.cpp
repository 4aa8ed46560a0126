// reshape, transpose, permute and concat. Every result is contiguous: reshape is a view of the
// (contiguous) input, transpose and permute copy through Tensor::contiguous() (a strided copy on
// either device), concat copies each input's block with the copy_2d kernel. The backward of
// each is the inverse rearrangement of the gradient.
#include "kernels/shape.h"
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "kernels/dispatch.h"

namespace nextvit::ops {

Variable reshape(const Variable& x, const Shape& shape) {
  profiler::OpScope scope(profiler::OpKind::Copies);
  Tensor tx = f32_input(x, "reshape", "x");
  Tensor y = tx.view(infer_shape(shape, tx.shape(), "reshape"));
  const Shape in_shape = tx.shape();
  return make_result(y, {x}, "reshape", [in_shape](const Tensor& g) {
    return std::vector<Tensor>{g.reshape(in_shape)};
  });
}

Variable transpose(const Variable& x, int64_t dim0, int64_t dim1) {
  profiler::OpScope scope(profiler::OpKind::Copies);
  Tensor tx = f32_input(x, "transpose", "x");
  const int64_t a = wrap_dim(dim0, tx.shape(), "transpose"),
                b = wrap_dim(dim1, tx.shape(), "transpose");
  Tensor y = tx.transpose(a, b).contiguous();
  return make_result(y, {x}, "transpose", [a, b](const Tensor& g) {
    return std::vector<Tensor>{g.transpose(a, b).contiguous()};
  });
}

Variable permute(const Variable& x, const std::vector<int64_t>& order) {
  profiler::OpScope scope(profiler::OpKind::Copies);
  Tensor tx = f32_input(x, "permute", "x");
  NV_CHECK(static_cast<int64_t>(order.size()) == tx.dim(),
           "permute: order {} has {} axes but input {} has {}", order, order.size(),
           shape_str(tx.shape()), tx.dim());
  // inverse[order[i]] = i: the gradient goes back through the inverse permutation.
  std::vector<int64_t> axes(order.size()), inverse(order.size(), -1);
  for (size_t i = 0; i < order.size(); ++i) {
    axes[i] = wrap_dim(order[i], tx.shape(), "permute");
    NV_CHECK(inverse[axes[i]] < 0, "permute: axis {} appears twice in order {}", axes[i], order);
    inverse[axes[i]] = static_cast<int64_t>(i);
  }
  Tensor y = tx.permute(axes).contiguous();
  return make_result(y, {x}, "permute", [inverse](const Tensor& g) {
    return std::vector<Tensor>{g.permute(inverse).contiguous()};
  });
}

Variable concat(const std::vector<Variable>& xs, int64_t dim) {
  profiler::OpScope scope(profiler::OpKind::Copies);
  const char* op = "concat";
  NV_CHECK(!xs.empty(), "{}: needs at least one input", op);
  std::vector<Tensor> ts;
  for (const Variable& v : xs) ts.push_back(f32_input(v, op, "xs"));
  const Tensor& first = ts[0];
  NV_CHECK(first.dim() >= 1, "{}: cannot concatenate scalars", op);
  const int64_t d = wrap_dim(dim, first.shape(), op);
  const Device dev = first.device();
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    NV_CHECK(t.device() == dev, "{}: input {} is on {} but input 0 is on {}", op, i,
             t.device().str(), dev.str());
    bool same = t.dim() == first.dim();
    for (int64_t k = 0; same && k < t.dim(); ++k) same = k == d || t.size(k) == first.size(k);
    NV_CHECK(same, "{}: input {} of shape {} does not match input 0 of shape {} outside dim {}", op,
             i, shape_str(t.shape()), shape_str(first.shape()), d);
    out_shape[d] += t.size(d);
  }

  // Viewed as (outer, size_d * inner), input i is a block of columns of the output starting at
  // column offset_i * inner.
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < d; ++k) outer *= first.size(k);
  for (int64_t k = d + 1; k < first.dim(); ++k) inner *= first.size(k);
  const int64_t out_cols = out_shape[d] * inner;
  Tensor y = new_f32(out_shape, dev);
  std::vector<int64_t> offsets;  // in columns of the (outer, out_cols) view
  std::vector<Shape> shapes;
  std::vector<bool> need;
  int64_t offset = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const int64_t cols = ts[i].size(d) * inner;
    if (ts[i].numel() > 0) {
      NV_DISPATCH(dev, copy_2d, outer, cols, ts[i].data<float>(), cols, y.data<float>() + offset,
                  out_cols);
    }
    offsets.push_back(offset);
    shapes.push_back(ts[i].shape());
    need.push_back(xs[i].requires_grad());
    offset += cols;
  }

  return make_result(y, xs, op, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    std::vector<Tensor> grads(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      if (!need[i]) continue;
      grads[i] = new_f32(shapes[i], dev);
      const int64_t cols = shapes[i][d] * inner;
      if (grads[i].numel() == 0) continue;
      NV_DISPATCH(dev, copy_2d, outer, cols, gc.data<float>() + offsets[i], out_cols,
                  grads[i].data<float>(), cols);
    }
    return grads;
  });
}

}  // namespace nextvit::ops
