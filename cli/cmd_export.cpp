// nextvit export: a trained model in another form.
//   --format deploy   every BatchNorm folded into its neighbouring conv or linear layer
//                     (models/deploy.h), written as safetensors with nextvit.form = "deploy";
//                     forward and predict load it like any other weights file.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "common_options.h"
#include "models/deploy.h"
#include "models/saved_model.h"

namespace nextvit::cli {
namespace {

struct ExportValues {
  std::string weights, model, format, output;
  int64_t num_classes = 0;
};

void declare(Options& o, ExportValues& v) {
  o.text("weights", &v.weights, "W.safetensors", "the model to export").required();
  o.choice("format", &v.format, {"deploy"},
           "deploy: safetensors of the network with every BatchNorm folded")
      .required();
  o.text("output", &v.output, "FILE", "where to write it").required();
  model_option(o, &v.model)
      .note("(only for weights without metadata: official or timm checkpoints)")
      .shown_default("the file's own");
  num_classes_option(o, &v.num_classes);
}

int run(const ExportValues& v) {
  SavedModel saved = load_saved_model(v.weights, v.model, v.num_classes);
  NextViT& model = *saved.model;  // eval mode
  // Every form exported is the deployment network: BatchNorms folded away.
  fold_batch_norms(model);
  const size_t folded = folded_batch_norm_tensors(model).size() / 5;  // 5 tensors each

  if (v.format == "deploy") {
    saved.metadata.form = ModelForm::Deploy;
    save_model(model, saved.metadata, v.output);
    std::fprintf(stderr, "%s: deploy form, %zu BatchNorm layers folded, %.1f MB written to %s\n",
                 model.config().name.c_str(), folded, std::filesystem::file_size(v.output) / 1e6,
                 v.output.c_str());
  }
  return 0;
}

}  // namespace

Command export_command() {
  return make_command<ExportValues>("export", "a saved model in its deployment form", declare, run);
}

}  // namespace nextvit::cli
