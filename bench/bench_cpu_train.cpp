// Training throughput on the CPU against PyTorch, same model, same settings, same run: images
// per second of full training steps (forward in train mode, cross-entropy with label smoothing,
// backward, AdamW step) on random data of the trainer's default shape.
//
//   build/bench/bench_cpu_train [--model nextvit_fmnist] [--batch 128] [--img 28] [--threads 2]
//                               [--steps 20] [--json out.json]
//
// PyTorch runs the same configuration through tools/nextvit_reference.py (the official
// computation, parameterised), with torch.set_num_threads equal to ours.
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "bench_util.h"
#include "core/args.h"
#include "models/nextvit.h"
#include "train/optim/adamw.h"

using namespace nextvit;

int main(int argc, char** argv) try {
  std::string model_name = "nextvit_fmnist", json_path;
  int64_t batch = 128, img = 28;
  int threads = 2, steps = 20;
  bool no_torch = false;
  cli::Options args("bench_cpu_train", "training steps per second on the CPU against PyTorch");
  args.text("model", &model_name, "NAME|CONFIG.json", "model")
      .integer("batch", &batch, "B", 1, 1 << 20, "images per step")
      .integer("img", &img, "S", 1, 1 << 15, "image side")
      .integer("threads", &threads, "N", 1, 4096, "OpenMP threads (PyTorch gets as many)")
      .integer("steps", &steps, "N", 1, 1000000, "timed steps")
      .text("json", &json_path, "FILE", "also write the results as JSON")
      .flag("no-torch", &no_torch, "skip the PyTorch side");
  if (!args.parse(argc, argv, 1)) return std::fputs(args.help().c_str(), stdout), 0;
  omp_set_num_threads(threads);

  bench::Memory our_memory;
  our_memory.base_mib = bench::proc_status_mib("VmRSS");
  NextViTConfig config = NextViTConfig::from_name(model_name);
  NextViT model(config);
  model.train();
  AdamW opt(weight_decay_groups(model, 0.05), AdamWOptions{1e-3});
  Tensor x = Tensor::empty({batch, 3, img, img});
  Generator g(1);
  fill_normal(x, g, 0.0f, 1.0f);
  std::vector<int64_t> labels(batch);
  for (auto& l : labels) l = g.randint(config.num_classes);
  Tensor y = Tensor::from_vector_i64(labels, {batch});

  auto step = [&] {
    Variable loss = ops::cross_entropy(model.forward(Variable(x)), y, 0.1f);
    opt.zero_grad();
    loss.backward();
    opt.step();
  };
  bench::Timing ours = bench::time_it(step, 2, steps);
  our_memory.peak_mib = bench::proc_status_mib("VmHWM");

  bench::Timing torch;
  bench::Memory torch_memory;
  bool have_torch = false;
  if (!no_torch) {
    const std::string cfg = config.to_json().dump();
    const std::string py =
        bench::kPythonProcStatus +
        fmt::format(
            "import json, sys, time, torch\n"
            "sys.path.insert(0, 'tools')\n"
            "import nextvit_reference as R\n"
            "torch.set_num_threads({0})\n"
            "rss_base = vm('VmRSS')\n"
            "m = R.NextViT(json.loads(sys.argv[1])).train()\n"
            "opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05)\n"
            "x = torch.randn({1}, 3, {2}, {2}); y = torch.randint(0, {3}, ({1},))\n"
            "lossf = torch.nn.CrossEntropyLoss(label_smoothing=0.1)\n"
            "ts = []\n"
            "for i in range(2 + {4}):\n"
            "    t0 = time.perf_counter()\n"
            "    loss = lossf(m(x), y); opt.zero_grad(); loss.backward(); opt.step()\n"
            "    t1 = time.perf_counter()\n"
            "    if i >= 2: ts.append((t1 - t0) * 1e3)\n"
            "ts.sort()\n"
            "print(json.dumps(dict(median=ts[len(ts)//2], p90=ts[min(len(ts)-1, int(0.9*len(ts)))],"
            " min=ts[0], version=torch.__version__, rss_base_mib=rss_base,"
            " rss_peak_mib=vm('VmHWM'))))\n",
            threads, batch, img, config.num_classes, steps);
    have_torch = bench::run_python_timing(py, "'" + cfg + "'", torch, &torch_memory);
  }

  auto ips = [&](double ms) { return batch * 1000.0 / ms; };
  std::printf(
      "%s training step (fwd + bwd + AdamW), batch %lld, %lldx%lld, fp32, %d thread(s), "
      "%s, %s\n\n",
      model_name.c_str(), (long long)batch, (long long)img, (long long)img, threads,
      bench::cpu_model().c_str(), bench::today().c_str());
  std::printf("%-10s %12s %12s %12s %14s %14s\n", "impl", "median ms", "p90 ms", "images/s",
              "peak RSS MiB", "step MiB");
  std::printf("%-10s %12.1f %12.1f %12.0f %14.0f %14.0f\n", "nextvit", ours.median_ms, ours.p90_ms,
              ips(ours.median_ms), our_memory.peak_mib, our_memory.step_mib());
  if (have_torch) {
    std::printf("%-10s %12.1f %12.1f %12.0f %14.0f %14.0f\n", "pytorch", torch.median_ms,
                torch.p90_ms, ips(torch.median_ms), torch_memory.peak_mib, torch_memory.step_mib());
    std::printf("\nthroughput ratio nextvit / pytorch: %.2f\n", torch.median_ms / ours.median_ms);
    std::printf("step memory ratio nextvit / pytorch: %.2f\n",
                our_memory.step_mib() / torch_memory.step_mib());
  }
  std::printf(
      "(step MiB: peak resident memory (VmHWM) minus the resident memory before the model was "
      "built: weights, gradients, optimizer state, activations, workspaces)\n");
  if (!json_path.empty()) {
    nlohmann::json j = {{"benchmark", "cpu_train_step"},
                        {"model", model_name},
                        {"batch", batch},
                        {"image", img},
                        {"threads", threads},
                        {"precision", "fp32"},
                        {"cpu", bench::cpu_model()},
                        {"date", bench::today()},
                        {"nextvit_ms", {{"median", ours.median_ms}, {"p90", ours.p90_ms}}},
                        {"nextvit_images_per_s", ips(ours.median_ms)},
                        {"nextvit_rss_mib",
                         {{"base", our_memory.base_mib},
                          {"peak", our_memory.peak_mib},
                          {"step", our_memory.step_mib()}}}};
    if (have_torch) {
      j["pytorch_rss_mib"] = {{"base", torch_memory.base_mib},
                              {"peak", torch_memory.peak_mib},
                              {"step", torch_memory.step_mib()}};
      j["step_memory_ratio"] = our_memory.step_mib() / torch_memory.step_mib();
      j["pytorch_ms"] = {{"median", torch.median_ms}, {"p90", torch.p90_ms}};
      j["pytorch_images_per_s"] = ips(torch.median_ms);
      j["throughput_ratio"] = torch.median_ms / ours.median_ms;
    }
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cpu_train: %s\n", e.what());
  return 1;
}
