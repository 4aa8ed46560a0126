#pragma once
// Profiling a Next-ViT step (what `nextvit profile` prints): warm-up steps, then timed steps
// that alternate between the plain step (the baseline) and the step with the profiler's scopes
// recording (core/profiler.h). The recorded time is attributed per layer (stem.i, features.i
// and their parts, head) and per op kind, forward and backward, with the MACs of
// models/nextvit_info.h for achieved GFLOP/s and the bytes the ops report for GB/s.
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "models/nextvit.h"

namespace nextvit {

struct ProfileOptions {
  int64_t batch = 1, height = 224, width = 224;
  Device device;
  bool train = false;  // forward + cross-entropy + backward (train mode), else eval forward
  int warmup = 2, iterations = 5;
  uint64_t seed = 0;
};

// One row, per step (means over the profiled steps).
struct ProfileRow {
  std::string name;  // module path ("features.3", "features.3.mhca") or op kind ("GEMM")
  int depth = 0;     // layers: 0 for stem.i, features.i, head and the rest; 1 for a block's parts
  double forward_ms = 0, backward_ms = 0;
  int64_t forward_calls = 0, backward_calls = 0;  // scopes entered per step
  int64_t macs = 0;  // forward MACs of the whole batch (0: not counted for this row)
  int64_t forward_bytes = 0, backward_bytes = 0;  // inputs + outputs the ops reported
  double total_ms() const { return forward_ms + backward_ms; }
};

struct ProfileReport {
  std::string model;
  ProfileOptions options;
  std::string clock;  // how time was read: "host steady_clock" or "CUDA events"
  int threads = 0;    // CPU threads of the kernels
  // Step times: the plain step (mean and median) and the profiled step (mean and median).
  double step_ms = 0, step_median_ms = 0, profiled_step_ms = 0, profiled_step_median_ms = 0;
  // Sum of the op-kind rows except "other": the time inside ops (mean per profiled step), and
  // that share of the median profiled step applied to it (robust to a few slow steps on a
  // shared machine; compare it with step_median_ms).
  double op_ms = 0, op_median_ms = 0;
  // Median over the timed pairs of (time inside ops of the profiled step) / (plain step just
  // before it): neighbours share the machine's load, so this is the least noisy comparison.
  double op_share_paired = 0;
  // The profiler's own cost: marks per step (two per scope) times one mark's host time.
  int64_t marks_per_step = 0;
  double mark_cost_ns = 0;
  double overhead_ms() const { return marks_per_step * mark_cost_ns * 1e-6; }
  int64_t macs = 0;                // forward MACs of the whole batch
  std::vector<ProfileRow> layers;  // forward order; depth-0 rows sum to profiled_step_ms
  std::vector<ProfileRow> kinds;   // one per op kind, "other" last; they sum to profiled_step_ms
};

// Names the model's modules for profiling (Module::name_for_profiling), then runs and times
// it. The model is moved to options.device and left in the mode the step needs.
ProfileReport profile_model(NextViT& model, const ProfileOptions& options);

}  // namespace nextvit
