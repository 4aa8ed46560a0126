// nextvit export: the deployment form of saved weights, as an ONNX model.
//   --format onnx: BatchNorms folded (models/deploy.h), then models/onnx_export.h writes the
//   graph for --img H W (default 224 224) with a symbolic batch, checked by onnx::checker.
#include <cstdio>

#include <fmt/ranges.h>

#include "commands.h"
#include "core/args.h"
#include "models/deploy.h"
#include "models/onnx_export.h"
#include "models/weights.h"

namespace nextvit::cli {

int run_export(int argc, char** argv) {
  Args args(
      argc, argv, 2,
      {{"model", 1}, {"weights", 1}, {"format", 1}, {"output", 1}, {"img", 2}, {"num-classes", 1}},
      "export");
  const std::string format = args.required("format");
  NV_CHECK(format == "onnx", "export: unknown --format '{}' (this build knows: onnx)", format);
  NV_CHECK(onnx_export_available(),
           "export --format onnx: this nextvit was built without ONNX (install libonnx-dev and "
           "libprotobuf-dev, tools/setup.sh does, and reconfigure; -DNEXTVIT_ONNX=ON requires "
           "them)");
  NextViTConfig config = NextViTConfig::from_name(args.required("model"));
  config.num_classes = args.integer("num-classes", config.num_classes, 1, kMaxClasses);
  config.validate();
  const int64_t h = args.integer("img", 224, 1, kMaxImageSide, 0);
  const int64_t w = args.integer("img", 224, 1, kMaxImageSide, 1);
  config.validate_input(h, w);
  const std::string output = args.required("output");

  NextViT model(config);
  load_weights(model, args.required("weights"));
  model.eval();
  fold_batch_norms(model);
  export_onnx(model, output, h, w);

  const OnnxSummary s = check_onnx(output);
  std::fprintf(stderr,
               "%s: wrote %s (ONNX IR %lld, opset %lld, %lld nodes, %.2f M parameters): "
               "%s [%s] -> %s [%s], checked by onnx::checker\n",
               config.name.c_str(), output.c_str(), (long long)s.ir_version, (long long)s.opset,
               (long long)s.nodes, s.parameters / 1e6, s.input_name.c_str(),
               fmt::format("{}", fmt::join(s.input_dims, ", ")).c_str(), s.output_name.c_str(),
               fmt::format("{}", fmt::join(s.output_dims, ", ")).c_str());
  return 0;
}

}  // namespace nextvit::cli
