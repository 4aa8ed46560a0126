#pragma once
// Every differentiable op, declared once. Each is implemented in autograd/ops/<op>.cpp, which
// checks shapes (throwing a nextvit::Error that names the op and the shapes), dispatches the
// forward to kernels/cpu or kernels/cuda by the inputs' device, and records its backward next
// to it. All inputs of one op must be f32 and on the same device. Each op opens a
// profiler::OpScope of its kind (core/profiler.h) first, so a profile files its time, and that
// of its backward, under that kind.
//
// Layout conventions (as PyTorch): images are NCHW, conv weights (Cout, Cin/groups, kh, kw),
// linear weights (out, in), tokens (B, N, C).
#include <cstdint>
#include <functional>
#include <vector>

#include "autograd/variable.h"
#include "core/rng.h"

namespace nextvit::ops {

// ---- elementwise (ops/elementwise.cpp) ---------------------------------------------------------
Variable add(const Variable& a, const Variable& b);  // same shape
Variable mul(const Variable& a, const Variable& b);  // same shape
Variable scale(const Variable& x, float s);
Variable relu(const Variable& x);
Variable sum(const Variable& x);   // all elements -> shape ()
Variable mean(const Variable& x);  // all elements -> shape ()

// ---- shape (ops/shape.cpp): results are contiguous ---------------------------------------------
Variable reshape(const Variable& x, const Shape& shape);  // one dim may be -1
Variable transpose(const Variable& x, int64_t dim0, int64_t dim1);
Variable permute(const Variable& x, const std::vector<int64_t>& order);
Variable concat(const std::vector<Variable>& xs, int64_t dim);  // equal shapes but along dim

// ---- convolution and matrix products -----------------------------------------------------------
struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t groups = 1;
  static Conv2dOptions make(int64_t stride, int64_t pad, int64_t groups = 1) {
    return {stride, stride, pad, pad, groups};
  }
};
// x (N, Cin, H, W), weight (Cout, Cin/groups, kh, kw), bias (Cout) or undefined.
Variable conv2d(const Variable& x, const Variable& weight, const Variable& bias,
                const Conv2dOptions& options);  // ops/conv2d.cpp
// x (..., in), weight (out, in), bias (out) or undefined -> (..., out).   ops/linear.cpp
Variable linear(const Variable& x, const Variable& weight, const Variable& bias);
// a (..., M, K), b (..., K, N), equal leading (batch) dims -> (..., M, N).   ops/matmul.cpp
Variable matmul(const Variable& a, const Variable& b);

// ---- normalization (ops/batch_norm.cpp) ---------------------------------------------------------
// x (N, C, *): BatchNorm2d on (N, C, H, W), BatchNorm1d on (N, C, L) or (N, C). weight and bias
// (C). In training mode normalises with the batch statistics (biased variance) and updates the
// running statistics in place: running = (1 - momentum) * running + momentum * batch, with the
// unbiased variance, as PyTorch. In eval mode uses the running statistics.
struct BatchNormOptions {
  bool training = false;
  float momentum = 0.1f;
  float eps = 1e-5f;
  // Synchronised BatchNorm (data-parallel training, ops/sync_batch_norm.cpp): when set and
  // training, the statistics are those of the union of every process's batch, forward and
  // backward. It must replace a host vector by its element-wise sum over the processes (an
  // all-reduce); every process calls it in the same order.
  std::function<void(std::vector<double>&)> sum_across_processes = nullptr;
};
Variable batch_norm(const Variable& x, const Variable& weight, const Variable& bias,
                    const Tensor& running_mean, const Tensor& running_var,
                    const BatchNormOptions& options);
// relu(batch_norm(...)) in one op: one kernel forward, one backward (ops/batch_norm_relu.cpp).
Variable batch_norm_relu(const Variable& x, const Variable& weight, const Variable& bias,
                         const Tensor& running_mean, const Tensor& running_var,
                         const BatchNormOptions& options);

// ---- eval-mode fusion (ops/conv2d_fused.cpp) ----------------------------------------------------
// conv2d, then (when bn is given) batch_norm in eval mode with bn's running statistics, then
// (when relu) relu, then (when residual is defined) add(residual, that): a block's residual
// connection, residual of the output's shape. On the CPU, with no gradient to record (inside a
// NoGradGuard, or no input requires one), the BatchNorm, the ReLU and the add run in the
// convolution's output pass, while each block of output is still in cache, and no
// intermediate tensor is made. Otherwise (CUDA, or a gradient wanted) it runs the ops in turn.
// Either way the result is that of the ops.
struct EvalBatchNorm {
  Variable weight, bias;             // (Cout) or undefined (gamma = 1, beta = 0)
  Tensor running_mean, running_var;  // (Cout)
  float eps = 1e-5f;
};
// input_bn, when given, is a BatchNorm (eval) applied to x first, over its input channels: a
// block's pre-norm feeding a 1x1 convolution. On the CPU path the GEMM applies its map to the
// rows of x as it packs them (no normalised tensor is made); for a convolution that is not 1x1
// with stride 1 and no padding, and on the unfused path, the BatchNorm op runs first.
Variable conv2d_eval_fused(const Variable& x, const Variable& weight, const Variable& bias,
                           const Conv2dOptions& options, const EvalBatchNorm* bn, bool relu,
                           const Variable& residual = Variable(),
                           const EvalBatchNorm* input_bn = nullptr);

// ---- pooling (ops/pooling.cpp) ------------------------------------------------------------------
struct AvgPool2dOptions {
  int64_t kernel = 2, stride = 2, padding = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;
};
Variable avg_pool2d(const Variable& x, const AvgPool2dOptions& options);  // (N, C, H, W)
// x (N, C, L): averages `kernel` consecutive positions along L with the given stride, no padding,
// floor mode (nn.AvgPool1d). E-MHSA uses it on the token axis.
Variable avg_pool1d(const Variable& x, int64_t kernel, int64_t stride);
// (N, C, H, W) -> (N, C)
Variable global_avg_pool(const Variable& x);

// ---- attention pieces ---------------------------------------------------------------------------
Variable softmax(const Variable& x);  // over the last dimension   ops/softmax.cpp
// softmax(scale q k^T) v fused (one kernel forward, one backward): q (..., n, d), k and v
// (..., m, d) with equal leading dimensions -> (..., n, d). For few keys (E-MHSA's pooled ones);
// throws unless pooled_attention_supported. The forward keeps the probabilities (..., n, m) for
// the backward only when a gradient is recorded.   ops/pooled_attention.cpp
Variable pooled_attention(const Variable& q, const Variable& k, const Variable& v, float scale);
// The same attention on images' channel-major layout: q (B, C, n), k and v (B, C, m), C = heads x
// d, head h of image b its channels [h d, (h + 1) d) -> out (B, C, n) likewise (what a 1x1
// convolution reads and writes: E-MHSA without token transposes, layers/e_mhsa.h). On the CPU
// with no gradient to record one kernel reads that layout as it lies; otherwise the heads are
// permuted to pooled_attention's layout and back (any device, with a backward).
Variable pooled_attention_channels(const Variable& q, const Variable& k, const Variable& v,
                                   int64_t heads, float scale);
// Whether pooled_attention's kernel on `device` takes heads (the product of the leading
// dimensions) x n queries with m keys of dimension d: CPU any m >= 1; CUDA d 16 or 32, m <= 256.
bool pooled_attention_supported(Device device, int64_t heads, int64_t n, int64_t m, int64_t d);

// ---- loss and regularisation (ops/cross_entropy.cpp, ops/drop_path.cpp) -------------------------
// logits (N, K), targets (N) i64 in [0, K). Mean over the batch of the cross-entropy with the
// target distribution (1 - s) * onehot + s / K, as torch.nn.CrossEntropyLoss(label_smoothing=s).
Variable cross_entropy(const Variable& logits, const Tensor& targets, float label_smoothing = 0.0f);
// Stochastic depth: in training, each sample (dim 0) is zeroed with probability p and the
// survivors scaled by 1 / (1 - p); identity in eval or when p == 0.
Variable drop_path(const Variable& x, float p, bool training, Generator& generator);

}  // namespace nextvit::ops
