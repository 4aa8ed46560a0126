// nextvit export: saved weights in their deployment form, every BatchNorm folded into its
// neighbouring conv or linear layer (models/deploy.h).
//   --format onnx: models/onnx_export.h writes the graph (opset 17, symbolic batch, --img fixed)
//   and onnx::checker plus strict shape inference check the file before it is reported.
#include <cstdio>
#include <filesystem>

#include <fmt/ranges.h>

#include "commands.h"
#include "common_options.h"
#include "models/deploy.h"
#include "models/onnx_export.h"
#include "models/weights.h"

namespace nextvit::cli {
namespace {

struct ExportValues {
  std::string model, weights, format, output;
  int64_t num_classes = 0;  // 0: the model's own
  int64_t height = 224, width = 224;
};

void declare(Options& o, ExportValues& v) {
  model_option(o, &v.model).required();
  o.text("weights", &v.weights, "W.safetensors",
         "weights in the official layout or timm's (detected)")
      .required();
  o.choice("format", &v.format, {"onnx"}, "what to write: an ONNX model (opset 17)").required();
  o.text("output", &v.output, "M.onnx", "file to write").required();
  image_option(o, &v.height, &v.width).note("(fixed in the graph; the batch stays free)");
  num_classes_option(o, &v.num_classes);
}

int run(const ExportValues& v) {
  NV_CHECK(onnx_export_available(),
           "--format onnx: this nextvit was built without ONNX (install libonnx-dev and "
           "libprotobuf-dev, as tools/setup.sh does, and reconfigure; -DNEXTVIT_ONNX=ON "
           "requires them)");
  NextViTConfig config = NextViTConfig::from_name(v.model);
  if (v.num_classes > 0) config.num_classes = v.num_classes;
  config.validate();
  config.validate_input(v.height, v.width);

  NextViT model(config);
  load_weights(model, v.weights);
  model.eval();
  fold_batch_norms(model);
  export_onnx(model, v.output, v.height, v.width);

  const OnnxSummary s = check_onnx(v.output);
  std::fprintf(stderr,
               "%s: ONNX IR %lld, opset %lld, %lld nodes, %.2f M parameters, %s [%s] -> %s [%s], "
               "checked by onnx::checker; %.1f MB written to %s\n",
               config.name.c_str(), (long long)s.ir_version, (long long)s.opset, (long long)s.nodes,
               s.parameters / 1e6, s.input_name.c_str(),
               fmt::format("{}", fmt::join(s.input_dims, ", ")).c_str(), s.output_name.c_str(),
               fmt::format("{}", fmt::join(s.output_dims, ", ")).c_str(),
               std::filesystem::file_size(v.output) / 1e6, v.output.c_str());
  return 0;
}

}  // namespace

Command export_command() {
  return make_command<ExportValues>(
      "export", "the deployment form (BatchNorm folded) of saved weights as an ONNX model", declare,
      run);
}

}  // namespace nextvit::cli
