// nextvit export: a trained model in another form. Every form is the deployment network, every
// BatchNorm folded into its neighbouring conv or linear layer (models/deploy.h):
//   --format deploy   safetensors with nextvit.form = "deploy"; forward and predict load it like
//                     any other weights file.
//   --format onnx     an ONNX model (models/onnx_export.h: opset 17, symbolic batch, the image
//                     size fixed by --img), checked by onnx::checker and strict shape inference
//                     before it is reported; the nextvit.* metadata goes into its metadata_props.
#include <cstdio>
#include <filesystem>

#include <fmt/ranges.h>

#include "commands.h"
#include "common_options.h"
#include "models/deploy.h"
#include "models/onnx_export.h"
#include "models/saved_model.h"

namespace nextvit::cli {
namespace {

struct ExportValues {
  std::string weights, model, format, output;
  int64_t num_classes = 0;
  int64_t height = 0, width = 0;  // 0: the model's eval size, else 224
};

void declare(Options& o, ExportValues& v) {
  o.text("weights", &v.weights, "W.safetensors", "the model to export").required();
  o.choice("format", &v.format, {"deploy", "onnx"},
           "deploy: safetensors of the network with every BatchNorm folded; onnx: that network "
           "as an ONNX model (opset 17, any batch)")
      .required();
  o.text("output", &v.output, "FILE", "where to write it").required();
  image_option(o, &v.height, &v.width)
      .note("(onnx only: fixed in the graph)")
      .shown_default("the model's eval size, else 224");
  model_option(o, &v.model)
      .note("(only for weights without metadata: official or timm checkpoints)")
      .shown_default("the file's own");
  num_classes_option(o, &v.num_classes);
}

void write_onnx(const NextViT& model, const ModelMetadata& metadata, const ExportValues& v) {
  const int64_t size = metadata.preprocess ? metadata.preprocess->size : 224;
  const int64_t h = v.height > 0 ? v.height : size, w = v.width > 0 ? v.width : size;
  export_onnx(model, v.output, h, w, metadata_entries(metadata));
  const OnnxSummary s = check_onnx(v.output);
  std::fprintf(stderr,
               "%s: ONNX IR %lld, opset %lld, %lld nodes, %.2f M parameters, %s [%s] -> %s [%s], "
               "checked by onnx::checker; %.1f MB written to %s\n",
               model.config().name.c_str(), (long long)s.ir_version, (long long)s.opset,
               (long long)s.nodes, s.parameters / 1e6, s.input_name.c_str(),
               fmt::format("{}", fmt::join(s.input_dims, ", ")).c_str(), s.output_name.c_str(),
               fmt::format("{}", fmt::join(s.output_dims, ", ")).c_str(),
               std::filesystem::file_size(v.output) / 1e6, v.output.c_str());
}

int run(const ExportValues& v) {
  NV_CHECK(v.format != "onnx" || onnx_export_available(),
           "--format onnx: this nextvit was built without ONNX (install libonnx-dev and "
           "libprotobuf-dev, as tools/setup.sh does, and reconfigure; -DNEXTVIT_ONNX=ON "
           "requires them)");
  NV_CHECK(v.format == "onnx" || v.height == 0, "--img applies to --format onnx only");
  SavedModel saved = load_saved_model(v.weights, v.model, v.num_classes);
  NextViT& model = *saved.model;  // eval mode
  // Every form exported is the deployment network: BatchNorms folded away.
  fold_batch_norms(model);
  const size_t folded = folded_batch_norm_tensors(model).size() / 5;  // 5 tensors each
  saved.metadata.form = ModelForm::Deploy;

  if (v.format == "deploy") {
    save_model(model, saved.metadata, v.output);
    std::fprintf(stderr, "%s: deploy form, %zu BatchNorm layers folded, %.1f MB written to %s\n",
                 model.config().name.c_str(), folded, std::filesystem::file_size(v.output) / 1e6,
                 v.output.c_str());
  } else {
    write_onnx(model, saved.metadata, v);
  }
  return 0;
}

}  // namespace

Command export_command() {
  return make_command<ExportValues>(
      "export", "a saved model in its deployment form: safetensors or ONNX", declare, run);
}

}  // namespace nextvit::cli
