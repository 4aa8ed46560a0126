#include "train/optim/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace nextvit {

namespace {

constexpr double kPi = 3.14159265358979323846;

// torch's _annealing_cos: from start (pct 0) to end (pct 1) along a half cosine.
double anneal_cos(double start, double end, double pct) {
  return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0);
}

}  // namespace

CosineSchedule::CosineSchedule(const CosineScheduleOptions& o) : options_(o) {
  NV_CHECK(std::isfinite(o.base_lr) && std::isfinite(o.min_lr) && std::isfinite(o.warmup_lr) &&
               o.base_lr >= 0 && o.min_lr >= 0 && o.warmup_lr >= 0,
           "cosine schedule: learning rates must be finite and >= 0, got base {} min {} warmup {}",
           o.base_lr, o.min_lr, o.warmup_lr);
  NV_CHECK(o.total_steps > 0 && o.warmup_steps >= 0 && o.warmup_steps <= o.total_steps,
           "cosine schedule: needs 0 <= warmup_steps <= total_steps and total_steps > 0, got "
           "warmup_steps {} total_steps {}",
           o.warmup_steps, o.total_steps);
}

double CosineSchedule::lr_at(int64_t step) const {
  NV_CHECK(step >= 0, "cosine schedule: step {} is negative", step);
  const CosineScheduleOptions& o = options_;
  if (step < o.warmup_steps) {
    return o.warmup_lr + (o.base_lr - o.warmup_lr) * double(step) / double(o.warmup_steps);
  }
  if (step >= o.total_steps) return o.min_lr;
  const double progress = double(step - o.warmup_steps) / double(o.total_steps - o.warmup_steps);
  return o.min_lr + 0.5 * (o.base_lr - o.min_lr) * (1.0 + std::cos(kPi * progress));
}

OneCycleSchedule::OneCycleSchedule(const OneCycleOptions& o) : options_(o) {
  NV_CHECK(std::isfinite(o.max_lr) && o.max_lr >= 0,
           "one-cycle schedule: max_lr must be finite and >= 0, got {}", o.max_lr);
  NV_CHECK(o.div_factor > 0 && o.final_div_factor > 0 && std::isfinite(o.div_factor) &&
               std::isfinite(o.final_div_factor),
           "one-cycle schedule: div_factor {} and final_div_factor {} must be finite and > 0",
           o.div_factor, o.final_div_factor);
  NV_CHECK(o.pct_start > 0 && o.pct_start < 1,
           "one-cycle schedule: pct_start must lie in (0, 1), got {}", o.pct_start);
  const double initial = o.max_lr / o.div_factor, minimum = initial / o.final_div_factor;
  const double total = double(o.total_steps), up_end = o.pct_start * total - 1.0;
  if (o.three_phase) {
    phases_[0] = {up_end, initial, o.max_lr};
    phases_[1] = {2.0 * o.pct_start * total - 2.0, o.max_lr, initial};
    phases_[2] = {total - 1.0, initial, minimum};
    num_phases_ = 3;
  } else {
    phases_[0] = {up_end, initial, o.max_lr};
    phases_[1] = {total - 1.0, o.max_lr, minimum};
    num_phases_ = 2;
  }
  // Each phase must span at least part of a step, or its interpolation divides by zero.
  double start = 0.0;
  for (int i = 0; i < num_phases_; ++i) {
    NV_CHECK(phases_[i].end_step > start,
             "one-cycle schedule: total_steps {} with pct_start {} leaves phase {} empty (it "
             "would end at step {} but starts at {})",
             o.total_steps, o.pct_start, i + 1, phases_[i].end_step, start);
    start = phases_[i].end_step;
  }
}

double OneCycleSchedule::lr_at(int64_t step) const {
  NV_CHECK(step >= 0, "one-cycle schedule: step {} is negative", step);
  // torch's OneCycleLR.get_lr: find the phase holding the step; the last phase takes the rest.
  const double s = std::min(double(step), phases_[num_phases_ - 1].end_step);
  double start = 0.0;
  for (int i = 0; i < num_phases_; ++i) {
    const Phase& p = phases_[i];
    if (s <= p.end_step || i == num_phases_ - 1) {
      return anneal_cos(p.start_lr, p.end_lr, (s - start) / (p.end_step - start));
    }
    start = p.end_step;
  }
  return phases_[num_phases_ - 1].end_lr;  // not reached: the last phase always returns
}

}  // namespace nextvit
