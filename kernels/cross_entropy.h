#pragma once
// Mean cross-entropy with label smoothing over logits (N, K) and int64 targets (N), as
// torch.nn.CrossEntropyLoss(label_smoothing=s): the target distribution of row r is
// q = (1 - s) * onehot(t_r) + s / K, so with lse_r = log(sum_j exp(x[r, j])),
//   loss = 1/N * sum_r (lse_r - (1 - s) * x[r, t_r] - s / K * sum_j x[r, j])
//   dlogits[r, j] = grad_loss / N * (softmax(x[r, :])_j - q_j)
// Targets must already be checked to lie in [0, K) (the op does it).
#include <cstdint>

namespace nextvit::kernels {

#define NV_CROSS_ENTROPY_KERNELS                                                                 \
  /* loss[0] = the mean loss; lse (N) = each row's log-sum-exp, kept for the backward */         \
  void cross_entropy_forward(int64_t n, int64_t k, const float* logits, const int64_t* targets,  \
                             float smoothing, float* loss, float* lse);                          \
  /* dlogits (N, K) for the scalar gradient grad_loss[0] (a device pointer on CUDA) */           \
  void cross_entropy_backward(int64_t n, int64_t k, const float* logits, const int64_t* targets, \
                              const float* lse, float smoothing, const float* grad_loss,         \
                              float* dlogits);

namespace cpu {
NV_CROSS_ENTROPY_KERNELS
}  // namespace cpu
namespace cuda {
NV_CROSS_ENTROPY_KERNELS
}  // namespace cuda

#undef NV_CROSS_ENTROPY_KERNELS

}  // namespace nextvit::kernels
