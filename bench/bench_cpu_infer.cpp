// Inference throughput of the deployment form (BatchNorm folded) on the CPU, images/s at
// several batch sizes, against PyTorch eager and ONNX Runtime in the same run, on the same
// weights and the same images:
//   nextvit      NextViT::forward after fold_batch_norms (models/deploy.h)
//   pytorch      timm's model with those weights, folded the same way (timm's reparameterize
//                merges the pre-BatchNorms, fuse_conv_bn_eval the conv -> BatchNorm pairs)
//   onnxruntime  the graph export_onnx writes (models/onnx_export.h), CPU execution provider
// Each baseline's logits are compared with ours (relative error printed), so the three run the
// same function. Weights are the model's seeded init; the timing does not depend on them.
//
//   build/bench/bench_cpu_infer [--model nextvit_small] [--batches 1 8 32] [--img 224]
//                               [--threads 2] [--runs 10] [--json out.json] [--no-python]
// Needs python3 with torch, timm, onnxruntime and safetensors on PATH for the baselines. On a
// machine shared with other work, run it with OMP_WAIT_POLICY=passive: libgomp's active waiting
// then costs far more than the work (16x at load ~19 on 2 cores; bench/results/README.md).
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "core/args.h"
#include "core/safetensors.h"
#include "models/deploy.h"
#include "models/onnx_export.h"
#include "models/weights.h"

using namespace nextvit;

namespace {

// argv: timm name, weights (timm names, unfolded), model.onnx ("" to skip), x, our logits,
// threads, warmup, runs. Prints one JSON object.
const char* kBaselines = R"PY(
import json, sys, time
import numpy as np
name, weights, onnx_path, x_path, y_path = sys.argv[1:6]
threads, warmup, runs = (int(v) for v in sys.argv[6:9])
from safetensors.numpy import load_file
x, ours = load_file(x_path)["input"], load_file(y_path)["logits"]
out = {}

def timed(f):
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter(); y = f(); ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    rel = float(np.abs(y.astype(np.float64) - ours).max() / np.abs(ours).max())
    return dict(median=ts[len(ts) // 2], p90=ts[min(len(ts) - 1, int(0.9 * len(ts)))],
                min=ts[0], rel_err=rel)

try:
    import torch, timm
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    from timm.models.nextvit import merge_pre_bn
    from safetensors.torch import load_file as load_torch
    torch.set_num_threads(threads)
    m = timm.create_model(name).eval()
    m.load_state_dict(load_torch(weights))
    with torch.no_grad():
        for mod in list(m.modules()):
            if hasattr(mod, "reparameterize"):
                mod.reparameterize()
        for mod in list(m.modules()):
            for conv in ("conv", "group_conv3x3"):
                c, n = getattr(mod, conv, None), getattr(mod, "norm", None)
                if isinstance(c, nn.Conv2d) and isinstance(n, nn.BatchNorm2d):
                    setattr(mod, conv, fuse_conv_bn_eval(c, n))
                    mod.norm = nn.Identity()
        merge_pre_bn(m.head.fc, m.norm)
        m.norm = nn.Identity()
    assert not any(isinstance(b, nn.modules.batchnorm._BatchNorm) for b in m.modules())
    xt = torch.from_numpy(x)
    def run_torch():
        with torch.inference_mode():
            return m(xt).numpy()
    out["pytorch"] = timed(run_torch)
    out["pytorch_version"] = torch.__version__
except Exception as e:
    out["pytorch_error"] = repr(e)

try:
    if not onnx_path:
        raise RuntimeError("no ONNX model (built without ONNX)")
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    s = ort.InferenceSession(onnx_path, o, providers=["CPUExecutionProvider"])
    out["onnxruntime"] = timed(lambda: s.run(["logits"], {"input": x})[0])
    out["onnxruntime_version"] = ort.__version__
except Exception as e:
    out["onnxruntime_error"] = repr(e)
print(json.dumps(out))
)PY";

struct Row {
  int64_t batch = 0;
  bench::Timing ours;
  nlohmann::json baselines;  // what the Python side printed
};

double images_per_s(int64_t batch, double ms) {
  return ms > 0 ? batch * 1e3 / ms : 0.0;
}

double baseline_ms(const nlohmann::json& b, const char* impl) {
  return b.contains(impl) ? b[impl]["median"].get<double>() : 0.0;
}

std::string load_average() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) != 3) return "unknown";
  return fmt::format("{:.2f} {:.2f} {:.2f}", l[0], l[1], l[2]);
}

void print_table(const std::vector<Row>& rows) {
  std::printf("%6s %12s %12s %12s %10s %10s %12s %12s\n", "batch", "nextvit", "pytorch",
              "onnxruntime", "vs torch", "vs ort", "err torch", "err ort");
  std::printf("%6s %12s %12s %12s %10s %10s %12s %12s\n", "", "images/s", "images/s", "images/s",
              "(ratio)", "(ratio)", "(rel)", "(rel)");
  for (const Row& r : rows) {
    const double ours = images_per_s(r.batch, r.ours.median_ms);
    const double pt = images_per_s(r.batch, baseline_ms(r.baselines, "pytorch"));
    const double ox = images_per_s(r.batch, baseline_ms(r.baselines, "onnxruntime"));
    auto err = [&](const char* impl) {
      return r.baselines.contains(impl)
                 ? fmt::format("{:.1e}", r.baselines[impl]["rel_err"].get<double>())
                 : std::string("-");
    };
    auto ratio = [&](double base) {
      return base > 0 ? fmt::format("{:.2f}", ours / base) : std::string("-");
    };
    std::printf("%6lld %12.1f %12s %12s %10s %10s %12s %12s\n", (long long)r.batch, ours,
                pt > 0 ? fmt::format("{:.1f}", pt).c_str() : "-",
                ox > 0 ? fmt::format("{:.1f}", ox).c_str() : "-", ratio(pt).c_str(),
                ratio(ox).c_str(), err("pytorch").c_str(), err("onnxruntime").c_str());
  }
  std::printf(
      "\nimages/s from the median of the timed runs; ratio = nextvit / baseline "
      "(above 1: nextvit faster); err = max|baseline - nextvit| / max|nextvit| of the "
      "logits\n");
}

nlohmann::json timing_json(const bench::Timing& t) {
  return {{"median", t.median_ms}, {"p90", t.p90_ms}, {"min", t.min_ms}, {"runs", t.runs}};
}

}  // namespace

int main(int argc, char** argv) try {
  std::string model_name = "nextvit_small", json_path;
  std::vector<int64_t> batches{1, 8, 32};
  int64_t img = 224;
  int threads = 2, runs = 10;
  bool no_python = false;
  cli::Options args("bench_cpu_infer",
                    "deploy-form inference against PyTorch eager and ONNX Runtime");
  args.text("model", &model_name, "NAME|CONFIG.json", "model")
      .add({"batches", "B...", 1, 8, "1 8 32", "batch sizes, one table row each", false,
            [&batches](const std::vector<std::string>& v) {
              batches.clear();
              for (const auto& b : v) {
                size_t used = 0;
                const long long n = std::stoll(b, &used);
                NV_CHECK(used == b.size() && n >= 1 && n <= 4096,
                         "bench_cpu_infer: --batches takes integers in [1, 4096], got '{}'", b);
                batches.push_back(n);
              }
            }})
      .integer("img", &img, "S", 1, kMaxImageSide, "image side")
      .integer("threads", &threads, "N", 1, 4096, "threads of every implementation")
      .integer("runs", &runs, "N", 1, 1000000, "timed runs per batch size and implementation")
      .text("json", &json_path, "FILE", "also write the results as JSON")
      .flag("no-python", &no_python, "skip the PyTorch and ONNX Runtime baselines");
  if (!args.parse(argc, argv, 1)) return std::fputs(args.help().c_str(), stdout), 0;
  omp_set_num_threads(threads);
  const std::string load_start = load_average();

  // The model, its unfolded weights in timm's names for PyTorch, then the deploy form and its
  // ONNX graph.
  const NextViTConfig config = NextViTConfig::from_name(model_name);
  NextViT model(config, 1);
  model.eval();
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / fmt::format("nextvit_infer_{}", ::getpid());
  std::filesystem::create_directories(dir);
  const std::string weights = (dir / "weights_timm.safetensors").string();
  std::vector<std::pair<std::string, Tensor>> timm_state;
  for (const auto& [name, t] : model.state_dict()) {
    timm_state.emplace_back(official_to_timm(name, config), t);
  }
  write_safetensors(weights, timm_state);
  fold_batch_norms(model);
  std::string onnx_path;
  if (onnx_export_available()) {
    onnx_path = (dir / "model.onnx").string();
    export_onnx(model, onnx_path, img, img);
  } else {
    std::fprintf(stderr, "built without ONNX: no ONNX Runtime column\n");
  }

  std::vector<Row> rows;
  for (int64_t batch : batches) {
    Row row;
    row.batch = batch;
    Tensor x = Tensor::empty({batch, 3, img, img});
    Generator g(static_cast<uint64_t>(batch));
    fill_normal(x, g, 0.0f, 1.0f);
    Tensor logits;
    row.ours = bench::time_it(
        [&] {
          NoGradGuard ng;
          logits = model.forward(Variable(x)).data();
        },
        2, runs);
    if (!no_python) {
      const std::string xp = (dir / "x.safetensors").string(),
                        yp = (dir / "y.safetensors").string();
      write_safetensors(xp, {{"input", x}});
      write_safetensors(yp, {{"logits", logits}});
      row.baselines = bench::run_python_json(
          kBaselines, fmt::format("{} {} '{}' {} {} {} 2 {}", config.name, weights, onnx_path, xp,
                                  yp, threads, runs));
      if (row.baselines.is_null()) {
        std::fprintf(stderr,
                     "baselines unavailable: needs python3 with numpy, safetensors, torch, timm "
                     "and onnxruntime on PATH\n");
      }
      for (const char* e : {"pytorch_error", "onnxruntime_error"}) {
        if (row.baselines.contains(e)) {
          std::fprintf(stderr, "batch %lld: %s: %s\n", (long long)batch, e,
                       row.baselines[e].get<std::string>().c_str());
        }
      }
    }
    rows.push_back(row);
  }
  std::filesystem::remove_all(dir);
  const std::string load_end = load_average();

  std::printf(
      "%s inference (deploy form: BatchNorm folded), %lldx%lld, fp32, %d thread(s), %s, %s\n",
      config.name.c_str(), (long long)img, (long long)img, threads, bench::cpu_model().c_str(),
      bench::today().c_str());
  std::printf(
      "%d timed runs per batch after 2 warm-up runs; load average (1/5/15 min) %s at "
      "start, %s at end\n\n",
      runs, load_start.c_str(), load_end.c_str());
  print_table(rows);

  if (!json_path.empty()) {
    nlohmann::json results = nlohmann::json::array();
    for (const Row& r : rows) {
      nlohmann::json j = {{"batch", r.batch},
                          {"nextvit_ms", timing_json(r.ours)},
                          {"nextvit_images_per_s", images_per_s(r.batch, r.ours.median_ms)}};
      for (const char* impl : {"pytorch", "onnxruntime"}) {
        if (!r.baselines.contains(impl)) continue;
        const double ms = baseline_ms(r.baselines, impl);
        j[std::string(impl) + "_ms"] = r.baselines[impl];
        j[std::string(impl) + "_images_per_s"] = images_per_s(r.batch, ms);
        j[std::string("ratio_vs_") + impl] = ms / r.ours.median_ms;
      }
      results.push_back(j);
    }
    nlohmann::json j = {{"benchmark", "cpu_infer"},
                        {"model", config.name},
                        {"form", "deploy (BatchNorm folded)"},
                        {"image", img},
                        {"threads", threads},
                        {"precision", "fp32"},
                        {"cpu", bench::cpu_model()},
                        {"date", bench::today()},
                        {"load_average_start", load_start},
                        {"load_average_end", load_end},
                        {"results", results}};
    for (const char* v : {"pytorch_version", "onnxruntime_version"}) {
      if (!rows.empty() && rows.back().baselines.contains(v)) j[v] = rows.back().baselines[v];
    }
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cpu_infer: %s\n", e.what());
  return 1;
}
