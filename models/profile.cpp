#include "models/profile.h"

#include <algorithm>
#include <map>

#include "autograd/ops.h"
#include "core/cuda_runtime.h"
#include "core/device_guard.h"
#include "core/profiler.h"
#include "core/threads.h"
#include "layers/ntb.h"
#include "models/nextvit_info.h"

namespace nextvit {
namespace {

using profiler::OpKind;
using profiler::Phase;

// The step being profiled: eval forward, or forward + loss + backward in train mode.
struct Step {
  NextViT& model;
  Variable input;
  Tensor labels;
  bool train;

  void run() {
    if (!train) {
      NoGradGuard no_grad;
      model.forward(input);
      return;
    }
    model.zero_grad();
    ops::cross_entropy(model.forward(input), labels).backward();
  }
};

Step make_step(NextViT& model, const ProfileOptions& o) {
  const NextViTConfig& c = model.config();
  Generator g(o.seed);
  Tensor x = Tensor::empty({o.batch, c.in_channels, o.height, o.width});
  fill_normal(x, g, 0.0f, 1.0f);
  std::vector<int64_t> labels(static_cast<size_t>(o.batch));
  for (int64_t& l : labels) l = g.randint(c.num_classes);
  Tensor y = Tensor::from_vector_i64(labels, {o.batch});
  return {model, Variable(x.to(o.device)), y.to(o.device), o.train};
}

bool within(const std::string& path, const std::string& prefix) {
  return path == prefix || path.compare(0, prefix.size() + 1, prefix + ".") == 0;
}

// Adds the cells of module `id` (all kinds, both phases) to a row; steps divides to per step.
void add_module(ProfileRow& row, const profiler::Session& s, int id, double steps) {
  for (int k = 0; k < profiler::kKinds; ++k) {
    const profiler::Cell f = s.cell(id, static_cast<OpKind>(k), Phase::Forward);
    const profiler::Cell b = s.cell(id, static_cast<OpKind>(k), Phase::Backward);
    row.forward_ms += f.ms / steps;
    row.backward_ms += b.ms / steps;
    row.forward_bytes += static_cast<int64_t>(f.bytes / steps);
    row.backward_bytes += static_cast<int64_t>(b.bytes / steps);
    // Only the module's own scope counts as an entry (not the ops inside it).
    if (k == static_cast<int>(OpKind::None)) {
      row.forward_calls += static_cast<int64_t>(f.calls / steps);
      row.backward_calls += static_cast<int64_t>(b.calls / steps);
    }
  }
}

// A layer row: the module at `path` and everything under it.
ProfileRow layer_row(const std::string& path, int depth, const profiler::Session& s,
                     const ModelInfo& info, int64_t batch) {
  ProfileRow row;
  row.name = path;
  row.depth = depth;
  const double steps = s.steps();
  for (int id = 0; id < profiler::module_count(); ++id) {
    if (within(profiler::module_path(id), path)) add_module(row, s, id, steps);
  }
  for (const PartMacs& p : info.parts) {
    if (within(p.path, path)) row.macs += p.macs * batch;
  }
  return row;
}

std::vector<ProfileRow> layer_rows(NextViT& model, const profiler::Session& s,
                                   const ModelInfo& info, int64_t batch) {
  std::vector<ProfileRow> rows;
  for (size_t i = 0; i < model.stem->size(); ++i) {
    rows.push_back(layer_row("stem." + std::to_string(i), 0, s, info, batch));
  }
  const double steps = s.steps();
  for (size_t i = 0; i < model.features->size(); ++i) {
    Block& block = (*model.features)[i];
    const std::string path = "features." + std::to_string(i);
    rows.push_back(layer_row(path, 0, s, info, batch));
    for (const auto& [name, child] : block.children()) {
      ProfileRow part = layer_row(path + "." + name, 1, s, info, batch);
      if (part.forward_calls > 0) rows.push_back(part);  // a part with its own scope
    }
    // What the block does itself: its norms, residual adds, drop-path, concat.
    ProfileRow own;
    own.name = path + " (own)";
    own.depth = 1;
    add_module(own, s, block.profile_id(), steps);
    rows.push_back(own);
  }
  rows.push_back(layer_row("head", 0, s, info, batch));
  ProfileRow outside;
  outside.name = "(outside the model)";  // the loss, backward's bookkeeping, zero_grad
  add_module(outside, s, -1, steps);
  rows.push_back(outside);
  return rows;
}

std::vector<ProfileRow> kind_rows(const profiler::Session& s, const ModelInfo& info,
                                  int64_t batch) {
  std::vector<ProfileRow> rows;
  const double steps = s.steps();
  // "other" (OpKind::None) last.
  for (int k = 1; k <= profiler::kKinds; ++k) {
    const OpKind kind = static_cast<OpKind>(k % profiler::kKinds);
    ProfileRow row;
    row.name = profiler::kind_name(kind);
    for (int id = -1; id < profiler::module_count(); ++id) {
      const profiler::Cell f = s.cell(id, kind, Phase::Forward);
      const profiler::Cell b = s.cell(id, kind, Phase::Backward);
      row.forward_ms += f.ms / steps;
      row.backward_ms += b.ms / steps;
      row.forward_calls += static_cast<int64_t>(f.calls / steps);
      row.backward_calls += static_cast<int64_t>(b.calls / steps);
      row.forward_bytes += static_cast<int64_t>(f.bytes / steps);
      row.backward_bytes += static_cast<int64_t>(b.bytes / steps);
    }
    for (const PartMacs& p : info.parts) {
      if (p.kind == kind) row.macs += p.macs * batch;
    }
    rows.push_back(row);
  }
  return rows;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Time inside no op so far (the "other" row), all modules and phases.
double other_ms(const profiler::Session& s) {
  double ms = 0;
  for (int id = -1; id < profiler::module_count(); ++id) {
    ms +=
        s.cell(id, OpKind::None, Phase::Forward).ms + s.cell(id, OpKind::None, Phase::Backward).ms;
  }
  return ms;
}

void synchronize(Device device) {
  if (device.is_cuda()) cuda_rt::synchronize();
}

}  // namespace

ProfileReport profile_model(NextViT& model, const ProfileOptions& o) {
  NV_CHECK(o.batch >= 1 && o.iterations >= 1 && o.warmup >= 0,
           "profile: batch {} and iterations {} must be >= 1, warm-up {} >= 0", o.batch,
           o.iterations, o.warmup);
  ModelInfo info = analyze(model, o.height, o.width);
  if (NTB::attention_on_image(o.train, o.device)) {
    // E-MHSA's linear layers run as 1x1 convolutions there: count their products as such.
    for (PartMacs& p : info.parts) {
      if (p.kind == OpKind::Gemm && p.path.find(".e_mhsa") != std::string::npos) {
        p.kind = profiler::conv_kind(1, 1, 1);
      }
    }
  }
  model.name_for_profiling();
  // cuda:N: the thread's device for the whole run, so the profiler's CUDA events and the
  // synchronisations are on device N's stream.
  DeviceGuard device_guard(o.device);
  model.to(o.device);
  model.train(o.train);
  Step step = make_step(model, o);

  ProfileReport r;
  r.model = model.config().name;
  r.options = o;
  r.threads = num_threads();
  r.macs = info.macs * o.batch;
  const auto clock =
      o.device.is_cuda() ? profiler::Session::Clock::CudaEvents : profiler::Session::Clock::Host;
  r.clock = o.device.is_cuda() ? "CUDA events" : "host steady_clock";

  for (int i = 0; i < o.warmup; ++i) step.run();
  synchronize(o.device);
  // Plain and profiled steps alternate, so that drift in a shared machine's load hits both.
  profiler::Session plain(clock, /*scopes=*/false), profiled(clock);
  std::vector<double> plain_ms, profiled_ms, shares;
  for (int i = 0; i < o.iterations; ++i) {
    plain.begin_step();
    step.run();
    plain_ms.push_back(plain.end_step());
    const double other_before = other_ms(profiled);
    profiled.begin_step();
    step.run();
    profiled_ms.push_back(profiled.end_step());
    shares.push_back((profiled_ms.back() - (other_ms(profiled) - other_before)) / plain_ms.back());
  }
  r.op_share_paired = median(shares);
  r.step_ms = plain.total_ms() / o.iterations;
  r.step_median_ms = median(plain_ms);
  r.profiled_step_ms = profiled.total_ms() / o.iterations;
  r.profiled_step_median_ms = median(profiled_ms);
  r.marks_per_step = profiled.marks_per_step();
  r.mark_cost_ns = profiler::Session::mark_cost_ns(clock);

  r.layers = layer_rows(model, profiled, info, o.batch);
  r.kinds = kind_rows(profiled, info, o.batch);
  for (const ProfileRow& k : r.kinds) {
    if (k.name != profiler::kind_name(OpKind::None)) r.op_ms += k.total_ms();
  }
  r.op_median_ms = r.op_ms / r.profiled_step_ms * r.profiled_step_median_ms;
  return r;
}

}  // namespace nextvit
