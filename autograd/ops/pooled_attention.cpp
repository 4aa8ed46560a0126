// pooled_attention: out = softmax(scale q k^T) v over the last two dimensions in one kernel per
// direction (kernels/pooled_attention.h), for E-MHSA, whose keys are pooled down to a few
// tokens. The unfused composition (matmul, scale, softmax, matmul) stays in layers/e_mhsa.cpp as
// the reference, and tests/test_pooled_attention_op.cpp holds the two together.
//
// Memory: the forward kernel always writes the probabilities (heads, n, m). The backward needs
// them, so they are captured when a gradient will be asked for; otherwise make_result drops the
// closure and they are freed as the op returns (the kernel has no mode that skips them). That
// is no more than the unfused path keeps: its softmax output is saved by the second matmul.
// Derivation: docs/derivations.md#attention-backward
#include "kernels/pooled_attention.h"

#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "kernels/dispatch.h"

namespace nextvit::ops {

namespace {

constexpr const char* kOp = "pooled_attention";

struct Dims {
  int64_t heads, n, m, d;
};

// q (..., n, d), k and v (..., m, d) with equal leading dimensions, flattened to heads.
Dims check_shapes(const Tensor& q, const Tensor& k, const Tensor& v) {
  const std::string shapes = fmt::format("q {}, k {}, v {}", shape_str(q.shape()),
                                         shape_str(k.shape()), shape_str(v.shape()));
  NV_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(),
           "{}: expected q (..., n, d), k and v (..., m, d) of one rank >= 2, got {}", kOp, shapes);
  const int64_t r = q.dim();
  Dims s{1, q.size(r - 2), k.size(r - 2), q.size(r - 1)};
  for (int64_t i = 0; i < r - 2; ++i) {
    NV_CHECK(k.size(i) == q.size(i) && v.size(i) == q.size(i),
             "{}: leading (head) dimensions differ at dimension {}: {}", kOp, i, shapes);
    s.heads *= q.size(i);
  }
  NV_CHECK(k.size(r - 1) == s.d && v.size(r - 1) == s.d,
           "{}: k and v must have q's last dimension (head dimension {}), got {}", kOp, s.d,
           shapes);
  NV_CHECK(v.size(r - 2) == s.m, "{}: k and v must hold the same number of keys, got {}", kOp,
           shapes);
  return s;
}

}  // namespace

bool pooled_attention_supported(Device device, int64_t heads, int64_t n, int64_t m, int64_t d) {
  return device.is_cuda() ? kernels::pooled_attention_cuda_supported(heads, n, m, d)
                          : kernels::pooled_attention_cpu_supported(d, m);
}

Variable pooled_attention(const Variable& q, const Variable& k, const Variable& v, float scale) {
  profiler::OpScope scope(profiler::OpKind::Attention);
  Tensor tq = f32_input(q, kOp, "q"), tk = f32_input(k, kOp, "k"), tv = f32_input(v, kOp, "v");
  const Device dev = common_device({&q, &k, &v}, kOp);
  const Dims s = check_shapes(tq, tk, tv);
  NV_CHECK(pooled_attention_supported(dev, s.heads, s.n, s.m, s.d),
           "{}: the {} kernel does not take {} heads of {} queries with {} keys of dimension {} "
           "(CPU: at least one key; CUDA: dimension 16 or 32, 1 to {} keys, at most 65535 heads); "
           "use matmul + softmax + matmul",
           kOp, dev.str(), s.heads, s.n, s.m, s.d, kernels::kPooledAttentionMaxKeys);
  Shape probs_shape = tq.shape();
  probs_shape.back() = s.m;
  Tensor out = new_f32(tq.shape(), dev), probs = new_f32(probs_shape, dev);
  NV_DISPATCH(dev, pooled_attention_forward, s.heads, s.n, s.m, s.d, scale, tq.data<float>(),
              tk.data<float>(), tv.data<float>(), out.data<float>(), probs.data<float>());
  return make_result(out, {q, k, v}, kOp, [tq, tk, tv, probs, s, scale, dev](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dq = new_f32(tq.shape(), dev), dk = new_f32(tk.shape(), dev),
           dv = new_f32(tv.shape(), dev);
    NV_DISPATCH(dev, pooled_attention_backward, s.heads, s.n, s.m, s.d, scale, tq.data<float>(),
                tk.data<float>(), tv.data<float>(), probs.data<float>(), gc.data<float>(),
                dq.data<float>(), dk.data<float>(), dv.data<float>());
    return std::vector<Tensor>{dq, dk, dv};
  });
}

Variable pooled_attention_channels(const Variable& q, const Variable& k, const Variable& v,
                                   int64_t heads, float scale) {
  constexpr const char* op = "pooled_attention_channels";
  NV_CHECK(q.defined() && k.defined() && v.defined(), "{}: q, k and v must be defined", op);
  const std::string shapes = fmt::format("q {}, k {}, v {}", shape_str(q.shape()),
                                         shape_str(k.shape()), shape_str(v.shape()));
  NV_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3,
           "{}: expected q (B, C, n), k and v (B, C, m), got {}", op, shapes);
  const int64_t B = q.size(0), C = q.size(1), n = q.size(2), m = k.size(2);
  NV_CHECK(k.size(0) == B && v.size(0) == B && k.size(1) == C && v.size(1) == C && v.size(2) == m,
           "{}: k and v must be (B, C, m) with q's B and C, got {}", op, shapes);
  NV_CHECK(heads > 0 && C % heads == 0, "{}: {} channels are not {} heads of equal size", op, C,
           heads);
  const int64_t d = C / heads;
  const Device dev = common_device({&q, &k, &v}, op);
  if (!dev.is_cpu() || records_gradient({&q, &k, &v}) ||
      !kernels::pooled_attention_cpu_supported(d, m)) {
    // (B, C, len) -> (B, heads, len, d), the token layout of the fused op, and back.
    auto heads_of = [&](const Variable& t) {
      return permute(reshape(t, {B, heads, d, t.size(2)}), {0, 1, 3, 2});
    };
    const Variable out = pooled_attention(heads_of(q), heads_of(k), heads_of(v), scale);
    return reshape(permute(out, {0, 1, 3, 2}), {B, C, n});
  }
  profiler::OpScope scope(profiler::OpKind::Attention);
  Tensor tq = f32_input(q, op, "q"), tk = f32_input(k, op, "k"), tv = f32_input(v, op, "v");
  Tensor out = new_f32(tq.shape(), dev);
  kernels::cpu::pooled_attention_forward_channels(B * heads, n, m, d, scale, tq.data<float>(),
                                                  tk.data<float>(), tv.data<float>(),
                                                  out.data<float>());
  // No input needs a gradient here (checked above), so this records none; it counts the bytes.
  return make_result(out, {q, k, v}, op, nullptr);
}

}  // namespace nextvit::ops
