// nextvit export: a trained model in another form.
//   --format deploy   every BatchNorm folded into its neighbouring conv or linear layer
//                     (models/deploy.h), written as safetensors with nextvit.form = "deploy";
//                     forward and predict load it like any other weights file.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/args.h"
#include "models/deploy.h"
#include "models/saved_model.h"

namespace nextvit::cli {

int run_export(int argc, char** argv) {
  Args a(argc, argv, 2,
         {{"weights", 1}, {"model", 1}, {"num-classes", 1}, {"format", 1}, {"output", 1}},
         "export");
  const std::string weights = a.required("weights"), output = a.required("output");
  const std::string format = a.required("format");
  NV_CHECK(format == "deploy", "export: --format must be deploy, got '{}'", format);

  SavedModel saved =
      load_saved_model(weights, a.str("model", ""), a.integer("num-classes", 0, 1, kMaxClasses));
  NextViT& model = *saved.model;  // eval mode
  // Every form exported is the deployment network: BatchNorms folded away.
  fold_batch_norms(model);
  const size_t folded = folded_batch_norm_tensors(model).size() / 5;  // 5 tensors each

  if (format == "deploy") {
    saved.metadata.form = ModelForm::Deploy;
    save_model(model, saved.metadata, output);
    std::fprintf(stderr, "%s: deploy form, %zu BatchNorm layers folded, %.1f MB written to %s\n",
                 model.config().name.c_str(), folded, std::filesystem::file_size(output) / 1e6,
                 output.c_str());
  }
  return 0;
}

}  // namespace nextvit::cli
