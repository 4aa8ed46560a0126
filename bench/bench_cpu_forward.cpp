// Next-ViT forward on the CPU (eval mode, no gradients) against PyTorch on the same machine in
// the same run: same model (timm's nextvit_small, which computes exactly the official model),
// same batch, same image size, same thread count.
//
//   build/bench/bench_cpu_forward [--model nextvit_small] [--batch 1] [--img 224]
//                                 [--threads 2] [--runs 10] [--json out.json]
//
// Both sides run the network as trained (BatchNorms computed); bench_cpu_infer compares the
// deployment forms (BatchNorms folded on both sides).
#include <omp.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "core/args.h"
#include "models/nextvit.h"

using namespace nextvit;

int main(int argc, char** argv) try {
  std::string model_name = "nextvit_small", json_path;
  int64_t batch = 1, img = 224;
  int threads = 2, runs = 10;
  bool no_torch = false;
  cli::Options args("bench_cpu_forward", "Next-ViT forward on the CPU against PyTorch");
  args.text("model", &model_name, "NAME|CONFIG.json", "model")
      .integer("batch", &batch, "B", 1, 1 << 20, "images per forward")
      .integer("img", &img, "S", 1, 1 << 15, "image side")
      .integer("threads", &threads, "N", 1, 4096, "OpenMP threads (PyTorch gets as many)")
      .integer("runs", &runs, "N", 1, 1000000, "timed runs")
      .text("json", &json_path, "FILE", "also write the results as JSON")
      .flag("no-torch", &no_torch, "skip the PyTorch side");
  if (!args.parse(argc, argv, 1)) return std::fputs(args.help().c_str(), stdout), 0;
  omp_set_num_threads(threads);

  bench::Memory our_memory;
  our_memory.base_mib = bench::proc_status_mib("VmRSS");
  NextViT model(NextViTConfig::from_name(model_name));
  model.eval();
  Tensor x = Tensor::empty({batch, 3, img, img});
  Generator g(1);
  fill_normal(x, g, 0.0f, 1.0f);
  bench::Timing ours = bench::time_it(
      [&] {
        NoGradGuard ng;
        model.forward(Variable(x));
      },
      2, runs);
  our_memory.peak_mib = bench::proc_status_mib("VmHWM");

  bench::Timing torch;
  bench::Memory torch_memory;
  bool have_torch = false;
  if (!no_torch) {
    const std::string py =
        bench::kPythonProcStatus +
        fmt::format(
            "import json, time, torch, timm\n"
            "torch.set_num_threads({0})\n"
            "rss_base = vm('VmRSS')\n"
            "m = timm.create_model('{1}').eval()\n"
            "x = torch.randn({2}, 3, {3}, {3})\n"
            "ts = []\n"
            "with torch.inference_mode():\n"
            "    for i in range(2 + {4}):\n"
            "        t0 = time.perf_counter(); m(x); t1 = time.perf_counter()\n"
            "        if i >= 2: ts.append((t1 - t0) * 1e3)\n"
            "ts.sort()\n"
            "print(json.dumps(dict(median=ts[len(ts)//2], p90=ts[min(len(ts)-1, int(0.9*len(ts)))],"
            " min=ts[0], version=torch.__version__, rss_base_mib=rss_base,"
            " rss_peak_mib=vm('VmHWM'))))\n",
            threads, model_name, batch, img, runs);
    have_torch = bench::run_python_timing(py, "", torch, &torch_memory);
  }

  std::printf("%s forward, batch %lld, %lldx%lld, fp32, %d thread(s), %s, %s\n\n",
              model_name.c_str(), (long long)batch, (long long)img, (long long)img, threads,
              bench::cpu_model().c_str(), bench::today().c_str());
  std::printf("%-10s %12s %12s %12s %14s %14s\n", "impl", "median ms", "p90 ms", "min ms",
              "peak RSS MiB", "model+run MiB");
  std::printf("%-10s %12.1f %12.1f %12.1f %14.0f %14.0f\n", "nextvit", ours.median_ms, ours.p90_ms,
              ours.min_ms, our_memory.peak_mib, our_memory.step_mib());
  if (have_torch) {
    std::printf("%-10s %12.1f %12.1f %12.1f %14.0f %14.0f\n", "pytorch", torch.median_ms,
                torch.p90_ms, torch.min_ms, torch_memory.peak_mib, torch_memory.step_mib());
    std::printf("\nratio nextvit / pytorch (median): %.2f\n", ours.median_ms / torch.median_ms);
    std::printf("memory ratio nextvit / pytorch (model+run): %.2f\n",
                our_memory.step_mib() / torch_memory.step_mib());
  }
  std::printf(
      "(model+run MiB: peak resident memory (VmHWM) minus the resident memory before the model "
      "was built: weights and the forwards' activations and workspaces)\n");
  if (!json_path.empty()) {
    nlohmann::json j = {
        {"benchmark", "cpu_forward"},
        {"model", model_name},
        {"batch", batch},
        {"image", img},
        {"threads", threads},
        {"precision", "fp32"},
        {"cpu", bench::cpu_model()},
        {"date", bench::today()},
        {"nextvit_ms", {{"median", ours.median_ms}, {"p90", ours.p90_ms}, {"min", ours.min_ms}}},
        {"nextvit_rss_mib",
         {{"base", our_memory.base_mib},
          {"peak", our_memory.peak_mib},
          {"model_and_run", our_memory.step_mib()}}}};
    if (have_torch) {
      j["pytorch_rss_mib"] = {{"base", torch_memory.base_mib},
                              {"peak", torch_memory.peak_mib},
                              {"model_and_run", torch_memory.step_mib()}};
      j["memory_ratio"] = our_memory.step_mib() / torch_memory.step_mib();
      j["pytorch_ms"] = {{"median", torch.median_ms}, {"p90", torch.p90_ms}, {"min", torch.min_ms}};
      j["ratio_median"] = ours.median_ms / torch.median_ms;
    }
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cpu_forward: %s\n", e.what());
  return 1;
}
