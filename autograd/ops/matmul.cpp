// matmul: batched matrix product over equal leading (batch) dimensions, one strided-batched
// GEMM forward and one per input gradient.
#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"

namespace nextvit::ops {

Variable matmul(const Variable& a, const Variable& b) {
  profiler::OpScope scope(profiler::OpKind::Gemm);
  Tensor ta = f32_input(a, "matmul", "a"), tb = f32_input(b, "matmul", "b");
  const Device dev = common_device({&a, &b}, "matmul");
  const std::string as = shape_str(ta.shape()), bs = shape_str(tb.shape());
  NV_CHECK(ta.dim() >= 2 && tb.dim() >= 2,
           "matmul: inputs need at least 2 dimensions (..., rows, cols), got a {} and b {}", as,
           bs);
  NV_CHECK(ta.dim() == tb.dim() && Shape(ta.shape().begin(), ta.shape().end() - 2) ==
                                       Shape(tb.shape().begin(), tb.shape().end() - 2),
           "matmul: a {} and b {} must have equal batch dimensions (no broadcasting)", as, bs);
  const int64_t M = ta.size(-2), K = ta.size(-1), N = tb.size(-1);
  NV_CHECK(tb.size(-2) == K, "matmul: a {} has {} columns but b {} has {} rows", as, K, bs,
           tb.size(-2));
  int64_t batch_count = 1;
  for (int64_t d = 0; d < ta.dim() - 2; ++d) batch_count *= ta.size(d);
  Shape out_shape = ta.shape();
  out_shape.back() = N;
  Tensor c = new_f32(out_shape, dev);
  // c_i (M, N) = a_i (M, K) b_i (K, N) for every batch item i.
  NV_DISPATCH(dev, gemm_strided_batched, false, false, M, N, K, 1.0f, ta.data<float>(), K, M * K,
              tb.data<float>(), N, K * N, 0.0f, c.data<float>(), N, M * N, batch_count);

  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  Tensor saved_a = need_b ? ta : Tensor(), saved_b = need_a ? tb : Tensor();
  Shape a_shape = ta.shape(), b_shape = tb.shape();
  // Derivation: docs/derivations.md#attention-backward (dA = dC B^T, dB = A^T dC)
  return make_result(c, {a, b}, "matmul", [=](const Tensor& g) {
    Tensor dc = g.contiguous();
    Tensor da, db;
    if (need_a) {  // da_i (M, K) = dc_i (M, N) b_i^T
      da = new_f32(a_shape, dev);
      NV_DISPATCH(dev, gemm_strided_batched, false, true, M, K, N, 1.0f, dc.data<float>(), N, M * N,
                  saved_b.data<float>(), N, K * N, 0.0f, da.data<float>(), K, M * K, batch_count);
    }
    if (need_b) {  // db_i (K, N) = a_i^T dc_i (M, N)
      db = new_f32(b_shape, dev);
      NV_DISPATCH(dev, gemm_strided_batched, true, false, K, N, M, 1.0f, saved_a.data<float>(), K,
                  M * K, dc.data<float>(), N, M * N, 0.0f, db.data<float>(), N, K * N, batch_count);
    }
    return std::vector<Tensor>{da, db};
  });
}

}  // namespace nextvit::ops
