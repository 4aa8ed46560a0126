#pragma once
// One optimisation step of the training loop, and the running sums of its losses, written so
// that a step on a GPU never makes the host wait for the device: the loss and the gradient norm
// stay on the device, added into StepSums, which the trainer reads back only at its logging and
// checkpoint steps (one read for all the steps since the last). Divergence (a non-finite loss
// or gradient norm) is detected at that read; the trainer reads before every checkpoint, so a
// diverged model is never saved. tests/test_host_sync.cpp counts the waits.
#include <cstdint>
#include <vector>

#include "autograd/variable.h"
#include "models/nextvit.h"
#include "train/data/loader.h"
#include "train/distributed/data_parallel.h"
#include "train/optim/ema.h"
#include "train/optim/optimizer.h"

namespace nextvit {

// Sums of step losses and gradient norms, on the device they were computed on.
class StepSums {
 public:
  // loss: the step's one-element loss; grad_norm: its gradient norm, or undefined (no clipping).
  void add(const Tensor& loss, const Tensor& grad_norm);
  int64_t steps() const { return steps_; }

  struct Totals {
    double loss_sum = 0;       // over `steps` steps
    double grad_norm_sum = 0;  // over the steps that clipped
    int64_t steps = 0;
  };
  // Reads the sums back (one host wait on a GPU) and starts over.
  Totals take();

 private:
  Tensor sums_;  // (2,): loss sum, gradient-norm sum
  int64_t steps_ = 0;
};

struct StepSetup {
  NextViT* model = nullptr;
  Optimizer* optimizer = nullptr;
  ModelEma* ema = nullptr;  // may be null
  std::vector<Variable> params;
  Device device;
  float label_smoothing = 0.0f;
  float clip_grad = 0.0f;                 // 0: no clipping
  DataParallel* data_parallel = nullptr;  // averages gradients over ranks; null: loss.backward()
};

// Forward, loss, backward, clipping, optimizer and EMA update for one batch; adds the loss
// (and norm) to `sums`. The model must be in training mode.
void train_step(const StepSetup& s, const data::Batch& batch, StepSums& sums);

}  // namespace nextvit
