#pragma once
// Learning-rate schedules as pure functions of the optimizer step (0-based, counted in
// iterations, not epochs): a resumed run asks for lr_at(step) and gets exactly the value the
// uninterrupted run had, with no scheduler state to checkpoint.
#include <cstdint>

namespace nextvit {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // The learning rate to use for the update made at `step` (>= 0).
  virtual double lr_at(int64_t step) const = 0;
};

// Linear warm-up from warmup_lr to base_lr over warmup_steps (lr_at(warmup_steps) = base_lr),
// then a half cosine from base_lr down to min_lr at total_steps, and min_lr from there on:
//   s < W:       warmup_lr + (base_lr - warmup_lr) * s / W
//   W <= s < T:  min_lr + (base_lr - min_lr) * (1 + cos(pi * (s - W) / (T - W))) / 2
//   s >= T:      min_lr
// This is timm's CosineLRScheduler stepped per update with warmup_prefix=True and
// t_initial = T - W (Next-ViT's recipe: cosine, warm-up from 1e-6, min lr 1e-5).
struct CosineScheduleOptions {
  double base_lr = 1e-3;
  double min_lr = 0.0;
  double warmup_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
};

class CosineSchedule : public LrSchedule {
 public:
  explicit CosineSchedule(const CosineScheduleOptions& options);
  double lr_at(int64_t step) const override;
  const CosineScheduleOptions& options() const { return options_; }

 private:
  CosineScheduleOptions options_;
};

// torch.optim.lr_scheduler.OneCycleLR with cosine annealing (momentum cycling is not
// modelled). Starts at max_lr / div_factor, rises to max_lr at step pct_start * total - 1,
// then falls to max_lr / div_factor / final_div_factor at step total - 1; with three_phase it
// first falls back to the initial lr at step 2 * pct_start * total - 2 and then to the minimum.
// Steps past total - 1 (where torch raises) keep the final lr.
struct OneCycleOptions {
  double max_lr = 1e-3;
  int64_t total_steps = 1;
  double pct_start = 0.3;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  bool three_phase = false;
};

class OneCycleSchedule : public LrSchedule {
 public:
  explicit OneCycleSchedule(const OneCycleOptions& options);
  double lr_at(int64_t step) const override;
  const OneCycleOptions& options() const { return options_; }

 private:
  struct Phase {
    double end_step, start_lr, end_lr;
  };
  OneCycleOptions options_;
  Phase phases_[3];
  int num_phases_;
};

}  // namespace nextvit
