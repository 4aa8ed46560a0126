// cross_entropy: mean cross-entropy with label smoothing over (N, K) logits and int64 targets.
#include "kernels/cross_entropy.h"
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "kernels/dispatch.h"

namespace nextvit::ops {

Variable cross_entropy(const Variable& logits, const Tensor& targets, float label_smoothing) {
  profiler::OpScope scope(profiler::OpKind::Loss);
  const char* op = "cross_entropy";
  Tensor tx = f32_input(logits, op, "logits");
  NV_CHECK(tx.dim() == 2 && tx.size(1) > 0, "{}: expected logits (N, K) with K > 0, got {}", op,
           shape_str(tx.shape()));
  const int64_t n = tx.size(0), k = tx.size(1);
  NV_CHECK(targets.defined(), "{}: targets are undefined", op);
  NV_CHECK(targets.dtype() == DType::I64 && targets.dim() == 1 && targets.size(0) == n,
           "{}: expected i64 targets ({}) for logits {}, got {} {}", op, n, shape_str(tx.shape()),
           dtype_name(targets.dtype()), shape_str(targets.shape()));
  NV_CHECK(targets.device() == tx.device(), "{}: targets are on {} but the logits are on {}", op,
           targets.device().str(), tx.device().str());
  NV_CHECK(label_smoothing >= 0.0f && label_smoothing <= 1.0f,
           "{}: label_smoothing must be in [0, 1], got {}", op, label_smoothing);
  // A target outside [0, K) would index past the row. On the CPU, check here; on a GPU the
  // kernel checks (reading the targets back would make the host wait every step) and the error
  // is raised at the next read from the device (core/cuda/device_errors.h).
  if (!targets.device().is_cuda()) {
    const Tensor host_targets = targets.contiguous();
    const int64_t* t = host_targets.data<int64_t>();
    for (int64_t r = 0; r < n; ++r) {
      NV_CHECK(t[r] >= 0 && t[r] < k,
               "{}: target {} of sample {} is out of range for {} classes (logits {})", op, t[r], r,
               k, shape_str(tx.shape()));
    }
  }

  const Device dev = tx.device();
  // A copy: the backward must see these labels even if the caller reuses its buffer.
  Tensor tt = targets.clone();
  Tensor loss = new_f32({}, dev), lse = new_f32({n}, dev);
  NV_DISPATCH(dev, cross_entropy_forward, n, k, tx.data<float>(), tt.data<int64_t>(),
              label_smoothing, loss.data<float>(), lse.data<float>());
  // The backward recomputes softmax from the logits and the saved log-sum-exp instead of
  // keeping an (N, K) probability tensor.
  // Derivation: docs/derivations.md#label-smoothed-cross-entropy-backward
  return make_result(
      loss, {logits}, op, [tx, tt, lse, n, k, label_smoothing, dev](const Tensor& g) {
        Tensor gc = g.contiguous();
        Tensor dx = new_f32(tx.shape(), dev);
        NV_DISPATCH(dev, cross_entropy_backward, n, k, tx.data<float>(), tt.data<int64_t>(),
                    lse.data<float>(), label_smoothing, gc.data<float>(), dx.data<float>());
        return std::vector<Tensor>{dx};
      });
}

}  // namespace nextvit::ops
