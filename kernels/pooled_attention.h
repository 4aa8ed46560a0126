#pragma once
// Fused attention for E-MHSA, whose keys and values are pooled down to few tokens (49 at
// 224x224 in every stage): per head, out = softmax(q k^T * scale) v, in one op instead of
// matmul -> softmax -> matmul, keeping the scores out of device memory except for the softmax
// probabilities, which the backward needs and the forward therefore saves. (The CPU forward
// runs the GEMM on blocks of query rows whose scores stay in cache between the two products;
// the CUDA forward is one kernel.)
//
//   q, out, dq, dout   (heads, n, d)     heads = batch * num_heads, n query tokens
//   k, v, dk, dv       (heads, m, d)     m pooled key/value tokens
//   probs              (heads, n, m)     probs[h, i, :] = softmax_j(scale * q[h, i] . k[h, j])
//
// Backward, with dS the gradient of the pre-softmax scores s = scale * q k^T:
//   dv = probs^T dout,   dP = dout v^T,   dS = probs * (dP - rowsum(dP * probs)),
//   dq = scale * dS k,   dk = scale * dS^T q
//
// Contiguous row-major f32 buffers. The CPU kernels take any d >= 1 and m >= 1; the CUDA
// kernels take d in {16, 32} (E-MHSA's head_dim) and m <= 256 (kernels/cuda/pooled_attention.cu
// says why) and throw a nextvit::Error naming the limit otherwise.
#include <cstdint>

namespace nextvit::kernels {

#define NV_POOLED_ATTENTION_KERNELS                                                                \
  /* out = softmax(scale * q k^T) v and probs = that softmax; overwrites out and probs */          \
  void pooled_attention_forward(int64_t heads, int64_t n, int64_t m, int64_t d, float scale,       \
                                const float* q, const float* k, const float* v, float* out,        \
                                float* probs);                                                     \
  /* dq, dk, dv from dout and the forward's probs; overwrites all three */                         \
  void pooled_attention_backward(                                                                  \
      int64_t heads, int64_t n, int64_t m, int64_t d, float scale, const float* q, const float* k, \
      const float* v, const float* probs, const float* dout, float* dq, float* dk, float* dv);

namespace cpu {
NV_POOLED_ATTENTION_KERNELS
// The forward for inference on images' channel-major layout, CPU only: q and out (heads, d, n),
// k and v (heads, d, m), each head a block of d channel rows, as the heads of a (C, H * W) map
// lie one after the other (C = heads x d). No probabilities are kept. Overwrites out.
void pooled_attention_forward_channels(int64_t heads, int64_t n, int64_t m, int64_t d, float scale,
                                       const float* q, const float* k, const float* v, float* out);
}  // namespace cpu
namespace cuda {
NV_POOLED_ATTENTION_KERNELS
}  // namespace cuda

// Whether the CUDA kernels take this head size and key count (an op can fall back to
// matmul + softmax + matmul when they do not). Usable in every build.
constexpr int64_t kPooledAttentionMaxKeys = 256;
inline bool pooled_attention_cuda_supported(int64_t d, int64_t m) {
  return (d == 16 || d == 32) && m >= 1 && m <= kPooledAttentionMaxKeys;
}
// The whole of what the CUDA kernels check (check_supported in kernels/cuda/pooled_attention.cu):
// d and m as above and 32-bit row offsets in a head; any number of heads (blocks loop over
// heads beyond the grid's 65535 rows).
inline bool pooled_attention_cuda_supported(int64_t heads, int64_t n, int64_t m, int64_t d) {
  return pooled_attention_cuda_supported(d, m) && heads >= 0 && n >= 0 &&
         n * m < (int64_t(1) << 31) && n * d < (int64_t(1) << 31);
}
// The CPU kernels take any sizes with at least one key (a softmax over no key is undefined).
inline bool pooled_attention_cpu_supported(int64_t d, int64_t m) {
  return d >= 1 && m >= 1;
}

#undef NV_POOLED_ATTENTION_KERNELS

}  // namespace nextvit::kernels
