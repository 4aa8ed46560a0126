// nextvit forward: logits of the tensor `input` (N, 3, H, W) of a safetensors file, written as
// `logits` (N, classes) to another. Eval mode: BatchNorm uses its running statistics (or is
// folded away, for a deploy-form file).
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "core/args.h"
#include "core/safetensors.h"
#include "models/memory_estimate.h"
#include "models/saved_model.h"

namespace nextvit::cli {

int run_forward(int argc, char** argv) {
  Args args(argc, argv, 2,
            {{"model", 1},
             {"weights", 1},
             {"input", 1},
             {"output", 1},
             {"num-classes", 1},
             {"device", 1}},
            "forward");
  const Device device = parse_device(args.str("device", "cpu"));
  const std::string input_path = args.required("input"), output_path = args.required("output");

  // A self-describing file needs no --model; a bare one (official, timm) does.
  SavedModel saved = load_saved_model(args.required("weights"), args.str("model", ""),
                                      args.integer("num-classes", 0, 1, kMaxClasses));
  NextViT& model = *saved.model;  // eval mode
  const NextViTConfig& config = model.config();
  const WeightLayout layout = saved.layout;
  model.to(device);

  Tensor x = read_safetensors(input_path).at("input");
  NV_CHECK(x.dim() == 4, "{}: 'input' must be (N, C, H, W), got {}", input_path,
           shape_str(x.shape()));
  check_memory_fits(config, x.shape()[0], x.shape()[2], x.shape()[3], false, "forward");
  x = x.to(DType::F32).to(device);

  const auto start = std::chrono::steady_clock::now();
  Tensor logits;
  {
    NoGradGuard no_grad;
    logits = model.forward(Variable(x)).data().cpu();
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  write_safetensors(output_path, {{"logits", logits}});
  std::fprintf(stderr,
               "%s (%s weights, %s form) on %s: input %s -> logits %s in %.1f ms, wrote %s\n",
               config.name.c_str(), layout == WeightLayout::Timm ? "timm" : "official",
               form_name(saved.metadata.form), device.str().c_str(), shape_str(x.shape()).c_str(),
               shape_str(logits.shape()).c_str(), ms, output_path.c_str());
  return 0;
}

}  // namespace nextvit::cli
