// nextvit forward: logits of the tensor `input` (N, 3, H, W) of a safetensors file, written as
// `logits` (N, classes) to another. Eval mode: BatchNorm uses its running statistics (or is
// folded away, for a deploy-form file). On a CUDA device the forward is captured in a CUDA
// graph and replayed (models/captured_forward.h); --no-graph runs it kernel by kernel.
#include <chrono>
#include <cstdio>
#include <memory>

#include "commands.h"
#include "common_options.h"
#include "core/device_guard.h"
#include "core/safetensors.h"
#include "models/captured_forward.h"
#include "models/memory_estimate.h"
#include "models/saved_model.h"

namespace nextvit::cli {
namespace {

struct ForwardValues {
  std::string model, weights, input, output;
  int64_t num_classes = 0;  // 0: the model's own
  Device device;
  bool no_graph = false;
};

void declare(Options& o, ForwardValues& v) {
  o.text("weights", &v.weights, "W.safetensors",
         "weights in the official layout or timm's (detected); a file with metadata (from train "
         "or export) says which model it holds")
      .required();
  model_option(o, &v.model)
      .note("(only for weights without metadata: official or timm checkpoints)")
      .shown_default("the file's own");
  o.text("input", &v.input, "X.safetensors", "file holding the tensor 'input' (N, 3, H, W)")
      .required();
  o.text("output", &v.output, "Y.safetensors", "file to write the tensor 'logits' (N, classes) to")
      .required();
  num_classes_option(o, &v.num_classes);
  device_option(o, &v.device);
  o.flag("no-graph", &v.no_graph,
         "on a CUDA device, run the forward kernel by kernel instead of capturing it in a CUDA "
         "graph and replaying it");
}

// The forward captured in a CUDA graph and replayed; eager (with a message) when the capture
// fails. Either way the logits on the host.
Tensor graph_forward(NextViT& model, const Tensor& x) {
  std::unique_ptr<CapturedForward> captured;
  try {
    captured = std::make_unique<CapturedForward>(model, x.shape());
  } catch (const Error& e) {
    std::fprintf(stderr, "forward: running without a CUDA graph (%s)\n", e.what());
    NoGradGuard no_grad;
    return model.forward(Variable(x)).data().cpu();
  }
  return captured->run(x).cpu();
}

int run(const ForwardValues& v) {
  // A self-describing file needs no --model; a bare one (official, timm) does.
  SavedModel saved = load_saved_model(v.weights, v.model, v.num_classes);
  NextViT& model = *saved.model;  // eval mode
  const NextViTConfig& config = model.config();
  const WeightLayout layout = saved.layout;
  const Device device = v.device;
  DeviceGuard device_guard(device);  // cuda:N: this thread's device (a no-op on the CPU)
  model.to(device);

  Tensor x = read_safetensors(v.input).at("input");
  NV_CHECK(x.dim() == 4, "{}: 'input' must be (N, C, H, W), got {}", v.input, shape_str(x.shape()));
  check_memory_fits(config, x.shape()[0], x.shape()[2], x.shape()[3], false, "forward");
  x = x.to(DType::F32).to(device);

  const auto start = std::chrono::steady_clock::now();
  Tensor logits;
  {
    NoGradGuard no_grad;
    const bool graph = device.is_cuda() && !v.no_graph;
    logits = graph ? graph_forward(model, x) : model.forward(Variable(x)).data().cpu();
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  write_safetensors(v.output, {{"logits", logits}});
  std::fprintf(
      stderr, "%s (%s weights, %s form) on %s%s: input %s -> logits %s in %.1f ms, wrote %s\n",
      config.name.c_str(), layout == WeightLayout::Timm ? "timm" : "official",
      form_name(saved.metadata.form), device.str().c_str(),
      device.is_cuda() ? (v.no_graph ? " (eager)" : " (CUDA graph)") : "",
      shape_str(x.shape()).c_str(), shape_str(logits.shape()).c_str(), ms, v.output.c_str());
  return 0;
}

}  // namespace

Command forward_command() {
  return make_command<ForwardValues>("forward", "logits of a batch in eval mode", declare, run);
}

}  // namespace nextvit::cli
