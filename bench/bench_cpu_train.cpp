// Training throughput on the CPU against PyTorch, same model, same settings, same run: images
// per second of full training steps (forward in train mode, cross-entropy with label smoothing,
// backward, AdamW step) on random data of the trainer's default shape.
//
//   build/bench/bench_cpu_train [--model nextvit_fmnist] [--batch 128] [--img 28] [--threads 2]
//                               [--steps 20] [--rounds 5] [--json out.json]
//
// PyTorch runs the same configuration through tools/nextvit_reference.py (the official
// computation, parameterised), with torch.set_num_threads equal to ours, beside us in its own
// process (bench/python_peer.h): the two sides take turns, `rounds` rounds of steps / rounds
// steps each, so that a burst of load from another tenant of the machine falls on both.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "bench_util.h"
#include "core/args.h"
#include "kernels/gemm.h"
#include "models/nextvit.h"
#include "python_peer.h"
#include "train/optim/adamw.h"

using namespace nextvit;

int main(int argc, char** argv) try {
  std::string model_name = "nextvit_fmnist", json_path;
  int64_t batch = 128, img = 28;
  int threads = 2, steps = 20, rounds = 5;
  bool no_torch = false;
  cli::Options args("bench_cpu_train", "training steps per second on the CPU against PyTorch");
  args.text("model", &model_name, "NAME|CONFIG.json", "model")
      .integer("batch", &batch, "B", 1, 1 << 20, "images per step")
      .integer("img", &img, "S", 1, 1 << 15, "image side")
      .integer("threads", &threads, "N", 1, 4096, "OpenMP threads (PyTorch gets as many)")
      .integer("steps", &steps, "N", 1, 1000000, "timed steps per side")
      .integer("rounds", &rounds, "R", 1, 1000, "alternating rounds the steps are split into")
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
  for (int i = 0; i < 2; ++i) step();  // warm-up

  rounds = std::min(rounds, steps);
  const int per_round = (steps + rounds - 1) / rounds;
  const std::string setup = fmt::format(
      "torch.set_num_threads({0})\n"
      "m = R.NextViT(json.loads(sys.argv[1])).train()\n"
      "opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05)\n"
      "x = torch.randn({1}, 3, {2}, {2}); y = torch.randint(0, {3}, ({1},))\n"
      "lossf = torch.nn.CrossEntropyLoss(label_smoothing=0.1)\n"
      "def step():\n"
      "    loss = lossf(m(x), y); opt.zero_grad(); loss.backward(); opt.step()\n",
      threads, batch, img, config.num_classes);
  bench::Alternation alt;
  bench::Memory torch_memory;
  const bool have_torch = bench::time_against_peer(
      step, !no_torch, "sys.path.insert(0, 'tools')\nimport nextvit_reference as R\n", setup,
      {config.to_json().dump()}, rounds, per_round,
      "python3 with torch, run from the repository root", alt, torch_memory);
  const bench::Timing ours = bench::summarize(alt.ours_ms);
  const bench::Timing torch = bench::summarize(alt.peer_ms);
  our_memory.peak_mib = bench::proc_status_mib("VmHWM");

  auto ips = [&](double ms) { return batch * 1000.0 / ms; };
  const char* isa = kernels::cpu::gemm_isa_name(kernels::cpu::gemm_isa());
  std::printf(
      "%s training step (fwd + bwd + AdamW), batch %lld, %lldx%lld, fp32, %d thread(s), "
      "%s (%s kernels), %s\n\n",
      model_name.c_str(), (long long)batch, (long long)img, (long long)img, threads,
      bench::cpu_model().c_str(), isa, bench::today().c_str());
  std::printf("%-10s %12s %12s %12s %14s %14s\n", "impl", "median ms", "p90 ms", "images/s",
              "peak RSS MiB", "step MiB");
  std::printf("%-10s %12.1f %12.1f %12.0f %14.0f %14.0f\n", "nextvit", ours.median_ms, ours.p90_ms,
              ips(ours.median_ms), our_memory.peak_mib, our_memory.step_mib());
  if (have_torch) {
    std::printf("%-10s %12.1f %12.1f %12.0f %14.0f %14.0f\n", "pytorch", torch.median_ms,
                torch.p90_ms, ips(torch.median_ms), torch_memory.peak_mib, torch_memory.step_mib());
    // Per round, the throughput ratio is the inverse of the rounds' time ratio.
    std::vector<double> round_tput;
    for (double r : alt.round_ratios) round_tput.push_back(1.0 / r);
    std::printf(
        "\nthroughput ratio nextvit / pytorch: %.2f; per round (%d rounds of %d): median %.2f, "
        "range %.2f-%.2f\n",
        torch.median_ms / ours.median_ms, alt.rounds, alt.steps_per_round,
        bench::median_of(round_tput), *std::min_element(round_tput.begin(), round_tput.end()),
        *std::max_element(round_tput.begin(), round_tput.end()));
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
                        {"isa", isa},
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
      std::vector<double> round_tput;
      for (double r : alt.round_ratios) round_tput.push_back(1.0 / r);
      j["rounds"] = alt.rounds;
      j["steps_per_round"] = alt.steps_per_round;
      j["round_throughput_ratios"] = round_tput;
      j["round_throughput_ratio_median"] = bench::median_of(round_tput);
    }
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cpu_train: %s\n", e.what());
  return 1;
}
