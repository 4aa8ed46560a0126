// softmax over the last dimension, and its backward from the output alone.
#include "kernels/softmax.h"
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "kernels/dispatch.h"

namespace nextvit::ops {

Variable softmax(const Variable& x) {
  profiler::OpScope scope(profiler::OpKind::Softmax);
  Tensor tx = f32_input(x, "softmax", "x");
  NV_CHECK(tx.dim() >= 1, "softmax: expected at least one dimension, got a scalar {}",
           shape_str(tx.shape()));
  const Device dev = tx.device();
  const int64_t cols = tx.size(-1), rows = cols > 0 ? tx.numel() / cols : 0;
  Tensor y = new_f32(tx.shape(), dev);
  NV_DISPATCH(dev, softmax_forward, rows, cols, tx.data<float>(), y.data<float>());
  // dx = y * (dy - sum(y * dy)) needs only y, which the next op (a matmul) keeps anyway.
  // Derivation: docs/derivations.md#softmax-backward
  return make_result(y, {x}, "softmax", [y, rows, cols, dev](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = new_f32(y.shape(), dev);
    NV_DISPATCH(dev, softmax_backward, rows, cols, y.data<float>(), gc.data<float>(),
                dx.data<float>());
    return std::vector<Tensor>{dx};
  });
}

}  // namespace nextvit::ops
