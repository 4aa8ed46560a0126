// Next-ViT forward on the CPU (eval mode, no gradients) against PyTorch on the same machine in
// the same run: same model (timm's nextvit_small, which computes exactly the official model),
// same batch, same image size, same thread count.
//
//   build/bench/bench_cpu_forward [--model nextvit_small] [--batch 1] [--img 224]
//                                 [--threads 2] [--runs 10] [--rounds 5] [--json out.json]
//
// PyTorch runs beside us in its own process (bench/python_peer.h) and the two sides take turns:
// `rounds` rounds of runs / rounds forwards each, so that a burst of load from another tenant
// of the machine falls on both sides. The table gives each side's statistics over all its runs
// and the ratio of the medians; "per round" the median and range of the rounds' own ratios.
//
// Both sides run the network as trained (BatchNorms computed); bench_cpu_infer compares the
// deployment forms (BatchNorms folded on both sides).
//
// The last line puts both sides against the hardware: the model's multiply-adds (convolutions,
// linear layers, attention products: models/nextvit_info.h) per median forward, as a share of the
// threads' FP32 FMA peak measured at the start (bench/fma_peak.h, the vector width of our GEMM).
// It says what a time ratio asks of a machine: on a core whose peak both sides are far from, a
// ratio is a matter of software; near the peak, of the hardware.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "core/args.h"
#include "fma_peak.h"
#include "kernels/gemm.h"
#include "models/nextvit.h"
#include "models/nextvit_info.h"
#include "python_peer.h"

using namespace nextvit;

int main(int argc, char** argv) try {
  std::string model_name = "nextvit_small", json_path;
  int64_t batch = 1, img = 224;
  int threads = 2, runs = 10, rounds = 5;
  bool no_torch = false;
  cli::Options args("bench_cpu_forward", "Next-ViT forward on the CPU against PyTorch");
  args.text("model", &model_name, "NAME|CONFIG.json", "model")
      .integer("batch", &batch, "B", 1, 1 << 20, "images per forward")
      .integer("img", &img, "S", 1, 1 << 15, "image side")
      .integer("threads", &threads, "N", 1, 4096, "OpenMP threads (PyTorch gets as many)")
      .integer("runs", &runs, "N", 1, 1000000, "timed runs per side")
      .integer("rounds", &rounds, "R", 1, 1000, "alternating rounds the runs are split into")
      .text("json", &json_path, "FILE", "also write the results as JSON")
      .flag("no-torch", &no_torch, "skip the PyTorch side");
  if (!args.parse(argc, argv, 1)) return std::fputs(args.help().c_str(), stdout), 0;
  omp_set_num_threads(threads);
  // Before anything else runs: the measurement wants the core to itself.
  const bench::FmaPeak core =
      bench::measure_fma_peak(kernels::cpu::gemm_isa() == kernels::cpu::GemmIsa::kAvx512);

  bench::Memory our_memory;
  our_memory.base_mib = bench::proc_status_mib("VmRSS");
  NextViT model(NextViTConfig::from_name(model_name));
  model.eval();
  const double macs = double(analyze(model, img, img).macs) * double(batch);
  Tensor x = Tensor::empty({batch, 3, img, img});
  Generator g(1);
  fill_normal(x, g, 0.0f, 1.0f);
  auto forward = [&] {
    NoGradGuard ng;
    model.forward(Variable(x));
  };
  for (int i = 0; i < 2; ++i) forward();  // warm-up: weights paged in, workspaces grown

  rounds = std::min(rounds, runs);
  const int per_round = (runs + rounds - 1) / rounds;
  const std::string setup = fmt::format(
      "torch.set_num_threads({0})\n"
      "m = timm.create_model('{1}').eval()\n"
      "x = torch.randn({2}, 3, {3}, {3})\n"
      "def step():\n"
      "    with torch.inference_mode():\n"
      "        m(x)\n",
      threads, model_name, batch, img);
  bench::Alternation alt;
  bench::Memory torch_memory;
  const bool have_torch =
      bench::time_against_peer(forward, !no_torch, "import timm\n", setup, {}, rounds, per_round,
                               "python3 with torch and timm", alt, torch_memory);
  const bench::Timing ours = bench::summarize(alt.ours_ms);
  const bench::Timing torch = bench::summarize(alt.peer_ms);
  our_memory.peak_mib = bench::proc_status_mib("VmHWM");

  const char* isa = kernels::cpu::gemm_isa_name(kernels::cpu::gemm_isa());
  std::printf("%s forward, batch %lld, %lldx%lld, fp32, %d thread(s), %s (%s kernels), %s\n\n",
              model_name.c_str(), (long long)batch, (long long)img, (long long)img, threads,
              bench::cpu_model().c_str(), isa, bench::today().c_str());
  std::printf("%-10s %12s %12s %12s %14s %14s\n", "impl", "median ms", "p90 ms", "min ms",
              "peak RSS MiB", "model+run MiB");
  std::printf("%-10s %12.1f %12.1f %12.1f %14.0f %14.0f\n", "nextvit", ours.median_ms, ours.p90_ms,
              ours.min_ms, our_memory.peak_mib, our_memory.step_mib());
  if (have_torch) {
    std::printf("%-10s %12.1f %12.1f %12.1f %14.0f %14.0f\n", "pytorch", torch.median_ms,
                torch.p90_ms, torch.min_ms, torch_memory.peak_mib, torch_memory.step_mib());
    std::printf(
        "\nratio nextvit / pytorch (median): %.2f; per round (%d rounds of %d): median %.2f, "
        "range %.2f-%.2f\n",
        ours.median_ms / torch.median_ms, alt.rounds, alt.steps_per_round,
        bench::median_of(alt.round_ratios),
        *std::min_element(alt.round_ratios.begin(), alt.round_ratios.end()),
        *std::max_element(alt.round_ratios.begin(), alt.round_ratios.end()));
    std::printf("memory ratio nextvit / pytorch (model+run): %.2f\n",
                our_memory.step_mib() / torch_memory.step_mib());
  }
  std::printf(
      "(model+run MiB: peak resident memory (VmHWM) minus the resident memory before the model "
      "was built: weights and the forwards' activations and workspaces)\n");
  // Share of the FP32 peak: 2 FLOPs per multiply-add over the median time.
  const double peak_gflops = threads * core.gflops_per_core();
  auto peak_share = [&](double ms) { return 2.0 * macs / (ms * 1e6) / peak_gflops; };
  const double floor_ms = 2.0 * macs / (peak_gflops * 1e6);
  if (core.known()) {
    std::printf(
        "\nFP32 peak: %d x %.1f GFLOP/s (%.2f GHz measured, %d x %d-bit FMAs per cycle); "
        "%.3f GMACs per forward: nextvit at %.0f%% of it",
        threads, core.gflops_per_core(), core.ghz, core.fmas_per_cycle, core.lanes * 32, macs / 1e9,
        100 * peak_share(ours.median_ms));
    if (have_torch) std::printf(", pytorch at %.0f%%", 100 * peak_share(torch.median_ms));
    // The floor: every multiply-add at the peak, nothing else. A target ratio to PyTorch whose
    // time lies under it cannot be met on this CPU in FP32 with these multiply-adds (issue 15
    // asks 0.6x at batch 1). The count is the model's (convolutions counted directly, as
    // PyTorch computes them); the 3x3 convolutions on the Winograd kernel do 16 of every 36 of
    // theirs (kernels/cpu/conv_winograd.h), so for us the floor is lower by that much.
    std::printf(
        "\nfloor (every multiply-add at that peak, nothing else; our Winograd 3x3 convolutions do "
        "fewer): %.1f ms",
        floor_ms);
    if (have_torch) {
      std::printf("; 0.6x pytorch's median is %.1f ms: %.0f%% of the peak", 0.6 * torch.median_ms,
                  100 * peak_share(0.6 * torch.median_ms));
    }
    std::printf("\n");
  }
  if (!json_path.empty()) {
    nlohmann::json j = {
        {"benchmark", "cpu_forward"},
        {"model", model_name},
        {"batch", batch},
        {"image", img},
        {"threads", threads},
        {"precision", "fp32"},
        {"cpu", bench::cpu_model()},
        {"isa", isa},
        {"date", bench::today()},
        {"nextvit_ms", {{"median", ours.median_ms}, {"p90", ours.p90_ms}, {"min", ours.min_ms}}},
        {"gmacs", macs / 1e9},
        {"nextvit_rss_mib",
         {{"base", our_memory.base_mib},
          {"peak", our_memory.peak_mib},
          {"model_and_run", our_memory.step_mib()}}}};
    if (core.known()) {
      j["fp32_peak"] = {{"gflops_per_thread", core.gflops_per_core()},
                        {"ghz", core.ghz},
                        {"fmas_per_cycle", core.fmas_per_cycle},
                        {"vector_bits", core.lanes * 32}};
      j["floor_ms"] = floor_ms;
      j["nextvit_peak_share"] = peak_share(ours.median_ms);
      if (have_torch) j["pytorch_peak_share"] = peak_share(torch.median_ms);
    }
    if (have_torch) {
      j["pytorch_rss_mib"] = {{"base", torch_memory.base_mib},
                              {"peak", torch_memory.peak_mib},
                              {"model_and_run", torch_memory.step_mib()}};
      j["memory_ratio"] = our_memory.step_mib() / torch_memory.step_mib();
      j["pytorch_ms"] = {{"median", torch.median_ms}, {"p90", torch.p90_ms}, {"min", torch.min_ms}};
      j["ratio_median"] = ours.median_ms / torch.median_ms;
      j["rounds"] = alt.rounds;
      j["runs_per_round"] = alt.steps_per_round;
      j["round_ratios"] = alt.round_ratios;
      j["round_ratio_median"] = bench::median_of(alt.round_ratios);
    }
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cpu_forward: %s\n", e.what());
  return 1;
}
