// The memory of a training step, ours against PyTorch's, counted in bytes (not timed): what the
// autograd graph keeps from the forward for the backward ("graph", the part that grows with the
// batch), and the peak of the whole step over what was allocated before it.
//
//   build/bench/bench_train_memory [--model nextvit_small] [--batch 4] [--img 224]
//                                  [--device cpu|cuda] [--top 12] [--json out.json]
//
// Ours: every allocation of the step's device goes through a counting allocator
// (core/allocator.h), tagged with the profiler's context (module, op kind, phase) at the time;
// "graph" is what is alive after the loss is computed minus what was alive before the forward,
// and the table below it says which ops allocated it. PyTorch (the reference model of
// tools/nextvit_reference.py, same configuration, in its own process on the CPU): "graph" is the
// bytes of the distinct storages its autograd saved (saved_tensors_hooks) that the forward made,
// i.e. without the parameters and the input (saved_bytes in tools/make_graph_memory_reference.py,
// which also writes the test's reference). Bytes are deterministic: one step tells.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "autograd/ops.h"
#include "bench_util.h"
#include "core/allocator.h"
#include "core/args.h"
#include "core/profiler.h"
#include "models/nextvit.h"
#include "train/optim/adamw.h"

using namespace nextvit;

namespace {

// Counts the live bytes of one device type and remembers who allocated each block.
class CountingAllocator final : public Allocator {
 public:
  CountingAllocator(DeviceType type, Allocator* inner) : type_(type), inner_(inner) {
    set_allocator(type_, this);
  }
  ~CountingAllocator() override { set_allocator(type_, inner_); }
  void* allocate(size_t bytes) override {
    void* p = inner_->allocate(bytes);
    blocks_[p] = {bytes, profiler::enabled() ? profiler::current() : profiler::Context{}};
    live_ += int64_t(bytes);
    peak_ = std::max(peak_, live_);
    return p;
  }
  void deallocate(void* ptr, size_t bytes) override {
    auto it = blocks_.find(ptr);
    if (it != blocks_.end()) {
      live_ -= int64_t(it->second.bytes);
      blocks_.erase(it);
    }
    inner_->deallocate(ptr, bytes);
  }
  const char* name() const override { return "counting"; }

  int64_t live() const { return live_; }
  int64_t peak() const { return peak_; }
  void reset_peak() { peak_ = live_; }
  // Live bytes by "op kind  module" (the block index of features.N dropped, so that a row sums
  // a kind of block over the network), of the blocks allocated inside a profiled op.
  std::map<std::string, int64_t> live_by_op() const {
    std::map<std::string, int64_t> rows;
    for (const auto& [p, b] : blocks_) {
      if (b.context.kind == profiler::OpKind::None && b.context.module < 0) continue;
      std::string m = profiler::module_path(b.context.module);
      if (m.rfind("features.", 0) == 0) {
        const size_t dot = m.find('.', 9);
        m = "features.*" + (dot == std::string::npos ? std::string() : m.substr(dot));
      }
      rows[fmt::format("{:<14} {}", profiler::kind_name(b.context.kind), m)] += int64_t(b.bytes);
    }
    return rows;
  }

 private:
  struct Block {
    size_t bytes;
    profiler::Context context;
  };
  DeviceType type_;
  Allocator* inner_;
  std::unordered_map<void*, Block> blocks_;
  int64_t live_ = 0, peak_ = 0;
};

struct Ours {
  int64_t graph = 0, peak = 0;
  std::map<std::string, int64_t> by_op;
};

Ours measure_ours(const NextViTConfig& config, int64_t batch, int64_t img, Device device) {
  NextViT model(config);
  model.to(device);
  model.name_for_profiling();
  model.train();
  AdamWOptions o;
  o.lr = 1e-3;
  AdamW opt(weight_decay_groups(model, 0.05), o);
  Generator g(1);
  Tensor x = Tensor::empty({batch, 3, img, img});
  fill_normal(x, g, 0.0f, 1.0f);
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (auto& l : labels) l = g.randint(config.num_classes);
  const Tensor xd = x.to(device);
  const Tensor yd = Tensor::from_vector_i64(labels, {batch}).to(device);
  auto forward = [&] { return ops::cross_entropy(model.forward(Variable(xd)), yd, 0.1f); };
  auto rest = [&](const Variable& loss) {
    opt.zero_grad();
    loss.backward();
    opt.step();
  };
  rest(forward());  // the optimizer's state exists from here on, as in every later step

  Ours r;
  CountingAllocator counter(device.type, allocator_for(device));
  profiler::Session session(profiler::Session::Clock::Manual);  // contexts only, no clock
  session.begin_step();
  {
    Variable loss = forward();
    r.graph = counter.live();
    r.by_op = counter.live_by_op();
    rest(loss);
  }
  session.end_step();
  r.peak = counter.peak();
  return r;
}

// The reference model's saved tensors, in a python3 process on the CPU.
nlohmann::json measure_torch(const NextViTConfig& config, int64_t batch, int64_t img) {
  const std::string script = fmt::format(
      R"(import json, sys
import torch
sys.path.insert(0, 'tools')
import nextvit_reference as R
from make_graph_memory_reference import saved_bytes
torch.manual_seed(0)
m = R.NextViT(json.loads(sys.argv[1])).train()
x = torch.randn({0}, 3, {1}, {1}); y = torch.randint(0, {2}, ({0},))
graph, _ = saved_bytes(m, x, y)
print(json.dumps(dict(graph=graph, version=torch.__version__)))
)",
      batch, img, config.num_classes);
  std::string arg = config.to_json().dump();
  // One shell word: the configuration's JSON has no single quotes.
  return bench::run_python_json(script, "'" + arg + "'");
}

}  // namespace

int main(int argc, char** argv) try {
  std::string model_name = "nextvit_small", device_name = "cpu", json_path;
  int64_t batch = 4, img = 224, top = 12;
  bool no_torch = false;
  cli::Options args("bench_train_memory", "the memory of a training step against PyTorch");
  args.text("model", &model_name, "NAME|CONFIG.json", "model")
      .integer("batch", &batch, "B", 1, 1 << 20, "images per step")
      .integer("img", &img, "S", 1, 1 << 15, "image side")
      .text("device", &device_name, "cpu|cuda", "where our step runs (PyTorch's: the CPU)")
      .integer("top", &top, "N", 0, 1000, "rows of the table of what the graph holds")
      .text("json", &json_path, "FILE", "also write the results as JSON")
      .flag("no-torch", &no_torch, "skip the PyTorch side");
  if (!args.parse(argc, argv, 1)) return std::fputs(args.help().c_str(), stdout), 0;
  NV_CHECK(device_name == "cpu" || device_name == "cuda",
           "bench_train_memory: --device is cpu or cuda, not '{}'", device_name);
  const Device device = device_name == "cuda" ? Device::cuda() : Device::cpu();
  const NextViTConfig config = NextViTConfig::from_name(model_name);

  const Ours ours = measure_ours(config, batch, img, device);
  const nlohmann::json torch = no_torch ? nlohmann::json() : measure_torch(config, batch, img);
  if (!no_torch && torch.is_null()) {
    std::fprintf(stderr,
                 "PyTorch baseline unavailable (python3 with torch, run from the "
                 "repository root)\n");
  }

  const double mb = 1e6;
  std::printf("%s training step, batch %lld, %lldx%lld, fp32, ours on %s, %s, %s\n\n",
              model_name.c_str(), (long long)batch, (long long)img, (long long)img,
              device.str().c_str(), bench::cpu_model().c_str(), bench::today().c_str());
  std::printf("%-10s %12s %16s %14s\n", "impl", "graph MB", "graph MB/image", "step peak MB");
  std::printf("%-10s %12.1f %16.2f %14.1f\n", "nextvit", ours.graph / mb, ours.graph / mb / batch,
              ours.peak / mb);
  if (!torch.is_null()) {
    const double tg = torch["graph"].get<double>();
    std::printf("%-10s %12.1f %16.2f %14s\n", "pytorch", tg / mb, tg / mb / batch, "-");
    std::printf("\nratio nextvit / pytorch (graph bytes): %.3f\n", ours.graph / tg);
  }
  std::printf(
      "\ngraph: bytes the forward made that are alive when the loss is computed (ours) / that "
      "autograd saved (PyTorch);\nstep peak: the most bytes alive during forward + backward + "
      "AdamW over those alive before it.\n");
  if (top > 0) {
    std::vector<std::pair<int64_t, std::string>> rows;
    for (const auto& [k, b] : ours.by_op) rows.push_back({b, k});
    std::sort(rows.rbegin(), rows.rend());
    std::printf("\nwhat our graph holds, by the op that allocated it (MB per image):\n");
    for (size_t i = 0; i < rows.size() && int64_t(i) < top; ++i)
      std::printf("  %8.2f  %s\n", rows[i].first / mb / batch, rows[i].second.c_str());
  }
  if (!json_path.empty()) {
    nlohmann::json j = {{"benchmark", "train_memory"},
                        {"model", model_name},
                        {"batch", batch},
                        {"image", img},
                        {"device", device.str()},
                        {"cpu", bench::cpu_model()},
                        {"date", bench::today()},
                        {"nextvit", {{"graph_bytes", ours.graph}, {"step_peak_bytes", ours.peak}}}};
    nlohmann::json by_op;
    for (const auto& [k, b] : ours.by_op) by_op[k] = b;
    j["nextvit"]["graph_by_op"] = by_op;
    if (!torch.is_null()) {
      j["pytorch"] = {{"graph_bytes", torch["graph"]}, {"version", torch["version"]}};
      j["ratio_graph"] = ours.graph / torch["graph"].get<double>();
    }
    std::ofstream(json_path) << j.dump(1) << "\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_train_memory: %s\n", e.what());
  return 1;
}
