#pragma once
// BatchNorm over channel dim 1 of (N, C, *): BatchNorm2d for images, BatchNorm1d for E-MHSA's
// pooled tokens (N, C, L). Buffers running_mean, running_var and num_batches_tracked, as PyTorch.
#include "autograd/ops.h"
#include "layers/module.h"

namespace nextvit {

class BatchNorm : public Module {
 public:
  explicit BatchNorm(int64_t channels, float eps = 1e-5f, float momentum = 0.1f);
  Variable forward(const Variable& x);
  // relu(forward(x)) as one fused op.
  Variable forward_relu(const Variable& x);
  void reset_parameters(Generator& generator) override;

  // Deployment: after its affine map has been merged into a neighbouring conv or linear layer
  // (models/deploy.h), the layer becomes the identity (forward_relu becomes a plain ReLU).
  void mark_folded() { folded_ = true; }
  bool folded() const { return folded_; }
  // The eval-mode map as y = scale * x + shift per channel (CPU tensors, computed in double).
  std::pair<Tensor, Tensor> affine() const;

  // Synchronised BatchNorm (data-parallel training): in training, the batch statistics are
  // those of every process's batch, summed by `sum` (an all-reduce set by train/, so that this
  // layer knows nothing of MPI; ops::BatchNormOptions::sum_across_processes). Empty: local.
  void set_sum_across_processes(std::function<void(std::vector<double>&)> sum) {
    sum_across_processes_ = std::move(sum);
  }

  int64_t channels() const { return channels_; }
  float eps() const { return eps_; }
  const Variable& weight() const { return weight_; }
  const Variable& bias() const { return bias_; }
  const Tensor& running_mean() const { return running_mean_; }
  const Tensor& running_var() const { return running_var_; }

 private:
  ops::BatchNormOptions options() const {
    return {is_training(), momentum_, eps_, sum_across_processes_};
  }
  // What every forward does first: refuse to train a folded layer, count a training batch.
  void begin_forward();

  int64_t channels_;
  float eps_, momentum_;
  bool folded_ = false;
  Variable weight_, bias_;
  Tensor running_mean_, running_var_, num_batches_tracked_;
  std::function<void(std::vector<double>&)> sum_across_processes_;
};

}  // namespace nextvit
