// bench_cuda_model: Next-ViT on the CUDA backend against PyTorch eager on the same GPU in the
// same run (timm's nextvit_small, which computes exactly the official model):
//
//   inference   eval mode, no gradients, batch 8, 224x224, fp32: latency per batch, eager
//               (kernel by kernel) and as a CUDA graph replay (models/captured_forward.h: the
//               forward captured once, the input copied into its buffer, one launch); the
//               ratio eager / graph is the host launch overhead the graph removes
//   training    train mode, batch 128: forward, cross-entropy, backward and an AdamW step
//               (weight decay 0.05, lr 1e-3; drop-path 0.1 as the recipe): images per second
//
// Both sides in fp32 with TF32 off (PyTorch: torch.backends.cudnn.allow_tf32 and
// torch.backends.cuda.matmul.allow_tf32 set False; ours never uses it), cudnn.benchmark off on
// both (our cuDNN plans come from its heuristics). Times are wall-clock per step, with the
// device synchronised at the end of each step, after warm-up; median, p90 and min over `runs`.
// Our cached device memory is released before PyTorch runs, and PyTorch runs in its own process.
//
// Our convolutions use the hand-written grouped kernel for MHCA; set NEXTVIT_CUDA_CONV=cudnn to
// time the same model with cuDNN for every convolution (kernels/cuda/conv2d.cu).
//
//   build/bench/bench_cuda_model [--model nextvit_small] [--infer-batch 8] [--train-batch 128]
//                                [--img 224] [--runs 20] [--warmup 3] [--no-torch] [--json FILE]
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "core/args.h"

#ifdef NEXTVIT_WITH_CUDA
#include <cuda_runtime.h>

#include "autograd/ops.h"
#include "core/cuda/caching_allocator.h"
#include "core/cuda_runtime.h"
#include "models/captured_forward.h"
#include "models/nextvit.h"
#include "train/optim/adamw.h"
#endif

using namespace nextvit;

#ifdef NEXTVIT_WITH_CUDA
namespace {

struct Side {
  bench::Timing infer, infer_graph, train;
  double peak_gib = 0;
  nlohmann::json allocator;  // ours: the caching allocator's statistics after the run
  std::string version;
  bool ok = false;
};

Side run_ours(const std::string& name, int64_t infer_batch, int64_t train_batch, int64_t img,
              int warmup, int runs) {
  Side s;
  s.version = "nextvit";
  NextViT model(NextViTConfig::from_name(name));
  model.to(Device::cuda());
  Generator g(1);

  // Inference.
  model.eval();
  Tensor x = Tensor::empty({infer_batch, 3, img, img});
  fill_normal(x, g, 0.0f, 1.0f);
  const Tensor xd = x.to(Device::cuda());
  s.infer = bench::time_it(
      [&] {
        NoGradGuard ng;
        model.forward(Variable(xd));
        cuda_rt::synchronize();
      },
      warmup, runs);
  {
    CapturedForward captured(model, xd.shape());
    s.infer_graph = bench::time_it(
        [&] {
          captured.run(xd);
          cuda_rt::synchronize();
        },
        warmup, runs);
  }

  // Training step.
  model.train();
  AdamWOptions o;
  o.lr = 1e-3;
  AdamW opt(weight_decay_groups(model, 0.05), o);
  Tensor xt = Tensor::empty({train_batch, 3, img, img});
  fill_normal(xt, g, 0.0f, 1.0f);
  std::vector<int64_t> labels(static_cast<size_t>(train_batch));
  for (auto& l : labels) l = g.randint(model.config().num_classes);
  const Tensor xtd = xt.to(Device::cuda());
  const Tensor yd = Tensor::from_vector_i64(labels, {train_batch}).to(Device::cuda());
  s.train = bench::time_it(
      [&] {
        opt.zero_grad();
        Variable logits = model.forward(Variable(xtd));
        Variable loss = ops::cross_entropy(logits, yd);
        loss.backward();
        opt.step();
        cuda_rt::synchronize();
      },
      warmup, runs);
  const cuda_rt::AllocatorStats m = cuda_rt::allocator_stats();
  s.peak_gib = double(m.peak_allocated_bytes) / (1 << 30);
  s.allocator = {{"peak_allocated_bytes", m.peak_allocated_bytes},
                 {"peak_reserved_bytes", m.peak_reserved_bytes},
                 {"cuda_malloc_calls", m.cuda_malloc_calls},
                 {"splits", m.splits}};
  s.ok = true;
  return s;
}

std::string gpu_name() {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "unknown GPU";
  return p.name;
}

std::string driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) return "unknown";
  return fmt::format("{}.{}", v / 1000, v % 1000 / 10);
}

// PyTorch eager in a separate python3 process: the script is written to a temporary file (no
// shell quoting to get wrong) and prints one JSON line.
Side run_torch(const std::string& name, int64_t infer_batch, int64_t train_batch, int64_t img,
               int warmup, int runs) {
  const std::string py = fmt::format(
      R"(import json, time, torch, timm
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.benchmark = False
dev = 'cuda'
torch.manual_seed(0)
m = timm.create_model('{0}', drop_path_rate=0.1).to(dev)
def timeit(f, warm, runs):
    for _ in range(warm):
        f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter(); f(); torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return dict(median=ts[len(ts) // 2], p90=ts[min(len(ts) - 1, int(0.9 * len(ts)))], min=ts[0])
m.eval()
x = torch.randn({1}, 3, {3}, {3}, device=dev)
with torch.inference_mode():
    infer = timeit(lambda: m(x), {4}, {5})
m.train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05)
xt = torch.randn({2}, 3, {3}, {3}, device=dev)
yt = torch.randint(0, 1000, ({2},), device=dev)
def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(m(xt), yt)
    loss.backward()
    opt.step()
train = timeit(step, {4}, {5})
print(json.dumps(dict(infer=infer, train=train, peak=torch.cuda.max_memory_allocated(),
                      version=torch.__version__ + ' timm ' + timm.__version__)))
)",
      name, infer_batch, train_batch, img, warmup, runs);
  const std::string path = fmt::format("/tmp/bench_cuda_model_{}.py", getpid());
  std::ofstream(path) << py;
  int status = 0;
  const std::string out = bench::run_command("python3 " + path + " 2>/dev/null", &status);
  std::remove(path.c_str());
  Side s;
  try {
    auto j = nlohmann::json::parse(out.substr(out.find('{')));
    for (auto [key, t] : {std::pair{"infer", &s.infer}, std::pair{"train", &s.train}}) {
      t->median_ms = j[key]["median"];
      t->p90_ms = j[key]["p90"];
      t->min_ms = j[key]["min"];
      t->runs = runs;
    }
    s.peak_gib = double(j["peak"]) / (1 << 30);
    s.version = j["version"];
    s.ok = true;
  } catch (...) {
    std::fprintf(stderr,
                 "PyTorch baseline unavailable (python3 with torch, timm and a GPU "
                 "needed)\n");
  }
  return s;
}

nlohmann::json timing_json(const bench::Timing& t) {
  return {{"median", t.median_ms}, {"p90", t.p90_ms}, {"min", t.min_ms}};
}

}  // namespace
#endif  // NEXTVIT_WITH_CUDA

int main(int argc, char** argv) try {
  std::string name = "nextvit_small", json_path;
  int64_t infer_batch = 8, train_batch = 128, img = 224;
  int runs = 20, warmup = 3;
  bool no_torch = false;
  cli::Options args("bench_cuda_model", "Next-ViT on the GPU against PyTorch");
  args.text("model", &name, "NAME|CONFIG.json", "model")
      .integer("infer-batch", &infer_batch, "B", 1, 1 << 20, "batch of the inference timing")
      .integer("train-batch", &train_batch, "B", 1, 1 << 20, "batch of the training-step timing")
      .integer("img", &img, "S", 1, 1 << 15, "image side")
      .integer("runs", &runs, "N", 1, 1000000, "timed runs")
      .integer("warmup", &warmup, "N", 0, 1000000, "untimed runs first")
      .text("json", &json_path, "FILE", "also write the results as JSON")
      .flag("no-torch", &no_torch, "skip the PyTorch side");
  if (!args.parse(argc, argv, 1)) return std::fputs(args.help().c_str(), stdout), 0;
#ifndef NEXTVIT_WITH_CUDA
  std::fprintf(stderr, "bench_cuda_model: this build has no CUDA backend\n");
  return 1;
#else
  NV_CHECK(cuda_rt::available(), "bench_cuda_model: no CUDA device");
  const char* conv_env = std::getenv("NEXTVIT_CUDA_CONV");
  const std::string conv_path = conv_env ? conv_env : "auto";

  const Side ours = run_ours(name, infer_batch, train_batch, img, warmup, runs);
  cuda_rt::release_cached_memory();
  Side torch;
  if (!no_torch) torch = run_torch(name, infer_batch, train_batch, img, warmup, runs);

  std::printf("%s, %s, driver %s, fp32 (no TF32), %lldx%lld, %s, convolutions: %s\n\n",
              name.c_str(), gpu_name().c_str(), driver_version().c_str(), (long long)img,
              (long long)img, bench::today().c_str(), conv_path.c_str());
  std::printf("%-10s %-26s %10s %10s %10s %12s %9s\n", "impl", "what", "median ms", "p90 ms",
              "min ms", "images/s", "peak GiB");
  auto row = [&](const char* impl, const Side& s) {
    std::printf("%-10s %-26s %10.2f %10.2f %10.2f %12.1f %9s\n", impl,
                fmt::format("inference, batch {}", infer_batch).c_str(), s.infer.median_ms,
                s.infer.p90_ms, s.infer.min_ms, infer_batch / (s.infer.median_ms * 1e-3), "");
    std::printf("%-10s %-26s %10.2f %10.2f %10.2f %12.1f %9.2f\n", impl,
                fmt::format("train step, batch {}", train_batch).c_str(), s.train.median_ms,
                s.train.p90_ms, s.train.min_ms, train_batch / (s.train.median_ms * 1e-3),
                s.peak_gib);
  };
  row("nextvit", ours);
  std::printf("%-10s %-26s %10.2f %10.2f %10.2f %12.1f %9s\n", "nextvit",
              fmt::format("inference graph, batch {}", infer_batch).c_str(),
              ours.infer_graph.median_ms, ours.infer_graph.p90_ms, ours.infer_graph.min_ms,
              infer_batch / (ours.infer_graph.median_ms * 1e-3), "");
  std::printf("\nratio eager / graph replay (median inference time): %.2f\n",
              ours.infer.median_ms / ours.infer_graph.median_ms);
  if (torch.ok) {
    row("pytorch", torch);
    std::printf("\nratio nextvit / pytorch (median time): inference %.2f, training %.2f\n",
                ours.infer.median_ms / torch.infer.median_ms,
                ours.train.median_ms / torch.train.median_ms);
  }
  if (!json_path.empty()) {
    nlohmann::json j = {{"benchmark", "cuda_model"},
                        {"model", name},
                        {"image", img},
                        {"precision", "fp32"},
                        {"infer_batch", infer_batch},
                        {"train_batch", train_batch},
                        {"runs", runs},
                        {"warmup", warmup},
                        {"conv_path", conv_path},
                        {"gpu", gpu_name()},
                        {"driver", driver_version()},
                        {"cpu", bench::cpu_model()},
                        {"date", bench::today()},
                        {"nextvit",
                         {{"infer_ms", timing_json(ours.infer)},
                          {"infer_graph_ms", timing_json(ours.infer_graph)},
                          {"train_ms", timing_json(ours.train)},
                          {"train_images_per_s", train_batch / (ours.train.median_ms * 1e-3)},
                          {"peak_gib", ours.peak_gib},
                          {"allocator", ours.allocator}}}};
    j["ratio_infer_eager_over_graph"] = ours.infer.median_ms / ours.infer_graph.median_ms;
    if (torch.ok) {
      j["pytorch"] = {{"version", torch.version},
                      {"infer_ms", timing_json(torch.infer)},
                      {"train_ms", timing_json(torch.train)},
                      {"train_images_per_s", train_batch / (torch.train.median_ms * 1e-3)},
                      {"peak_gib", torch.peak_gib}};
      j["ratio_infer_median"] = ours.infer.median_ms / torch.infer.median_ms;
      j["ratio_train_median"] = ours.train.median_ms / torch.train.median_ms;
    }
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
#endif
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cuda_model: %s\n", e.what());
  return 1;
}
