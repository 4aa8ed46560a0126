// drop_path (stochastic depth, timm's drop_path with scale_by_keep): in training each sample is
// kept with probability keep = 1 - p and then scaled by 1 / keep, or zeroed. Each call takes
// one 64-bit seed from the given Generator (so a checkpointed generator state replays the same
// masks) and the per-sample factors are Philox draws (core/philox.h) of that seed, made where the
// input lives: the same factors on CPU and GPU, and no upload from the host. They are kept for
// the backward, which scales the gradient by the very same factors.
#include "kernels/drop_path.h"
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "kernels/dispatch.h"

namespace nextvit::ops {

Variable drop_path(const Variable& x, float p, bool training, Generator& generator) {
  profiler::OpScope scope(profiler::OpKind::Elementwise);
  const char* op = "drop_path";
  NV_CHECK(x.defined(), "{}: input 'x' is undefined", op);
  NV_CHECK(p >= 0.0f && p <= 1.0f, "{}: drop probability must be in [0, 1], got {}", op, p);
  if (!training || p == 0.0f) return x;
  Tensor tx = f32_input(x, op, "x");
  NV_CHECK(tx.dim() >= 1, "{}: expected an input with a batch dimension, got a scalar", op);

  const int64_t rows = tx.size(0), cols = rows > 0 ? tx.numel() / rows : 0;
  const float keep = 1.0f - p;
  // One uniform draw per sample: kept when u < keep (timm's bernoulli_(keep_prob)).
  const Device dev = tx.device();
  const uint64_t seed = generator.next_u64();
  Tensor scale = new_f32({rows}, dev);
  NV_DISPATCH(dev, drop_path_scales, rows, seed, keep, scale.data<float>());

  Tensor y = new_f32(tx.shape(), dev);
  NV_DISPATCH(dev, scale_rows, rows, cols, tx.data<float>(), scale.data<float>(), y.data<float>());
  return make_result(y, {x}, op, [scale, rows, cols, dev](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = new_f32(gc.shape(), dev);
    NV_DISPATCH(dev, scale_rows, rows, cols, gc.data<float>(), scale.data<float>(),
                dx.data<float>());
    return std::vector<Tensor>{dx};
  });
}

}  // namespace nextvit::ops
