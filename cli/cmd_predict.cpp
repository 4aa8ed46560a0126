// nextvit predict: the top classes of image files (or folders of them) under a saved model.
// Exit status 0 when every image was classified, 3 when some could not be read (each reported on
// stderr with its reason and skipped), 1 on any other error.
#include <cstdio>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "common_options.h"
#include "models/saved_model.h"
#include "train/data/preprocess.h"
#include "train/predict.h"

namespace nextvit::cli {
namespace {

struct PredictValues {
  std::string weights, model;
  std::vector<std::string> inputs;
  int64_t top_k = 5, batch = 32, max_image_pixels = data::kDefaultMaxImagePixels;
  bool json = false;
  Device device;
};

void declare(Options& o, PredictValues& v) {
  o.positional("IMAGE|DIR", &v.inputs,
               "image files (JPEG, PNG, BMP) or folders of them (every image at any depth)");
  o.text("weights", &v.weights, "W.safetensors",
         "a model.safetensors from train, or its deploy form from export")
      .required();
  model_option(o, &v.model)
      .note("(only for weights without metadata: official or timm checkpoints)")
      .shown_default("the file's own");
  o.integer("top-k", &v.top_k, "K", 1, kMaxClasses, "classes shown per image");
  o.flag("json", &v.json, "one JSON object per image and line");
  o.integer("batch", &v.batch, "B", 1, 1 << 16, "images per forward pass");
  device_option(o, &v.device);
  o.integer("max-image-pixels", &v.max_image_pixels, "N", 1, int64_t(1) << 31,
            "images whose header declares more pixels are skipped before decoding");
}

std::string class_name(const std::vector<std::string>& classes, int64_t label) {
  return label < static_cast<int64_t>(classes.size()) ? classes[label]
                                                      : "class " + std::to_string(label);
}

void print_text(const Prediction& p, const std::vector<std::string>& classes) {
  std::printf("%s\n", p.path.c_str());
  for (const ClassScore& s : p.top) {
    std::printf("  %7.3f%%  %s\n", 100.0 * s.probability, class_name(classes, s.label).c_str());
  }
}

void print_json(const Prediction& p, const std::vector<std::string>& classes) {
  nlohmann::json top = nlohmann::json::array();
  for (const ClassScore& s : p.top) {
    top.push_back({{"label", s.label},
                   {"class", class_name(classes, s.label)},
                   {"probability", s.probability}});
  }
  std::printf("%s\n", nlohmann::json({{"path", p.path}, {"top", top}}).dump().c_str());
}

int run(const PredictValues& v) {
  PredictOptions o;
  o.top_k = v.top_k;
  o.batch = v.batch;
  o.device = v.device;
  o.max_pixels = v.max_image_pixels;

  SavedModel saved = load_saved_model(v.weights, v.model);
  Preprocess preprocess;
  if (saved.metadata.preprocess) {
    preprocess = *saved.metadata.preprocess;
  } else {
    preprocess = data::imagenet_preprocess(224);
    std::fprintf(stderr,
                 "predict: %s does not record its preprocessing; using ImageNet's evaluation "
                 "transform (resize to 256, centre crop 224, ImageNet mean and std)\n",
                 v.weights.c_str());
  }
  const std::vector<std::string>& classes = saved.metadata.classes;
  saved.model->to(o.device);

  const std::vector<std::string> paths = list_images(v.inputs);
  const int64_t failed =
      predict_images(*saved.model, preprocess, paths, o, [&](const Prediction& p) {
        if (!p.error.empty()) {
          std::fprintf(stderr, "predict: skipped %s: %s\n", p.path.c_str(), p.error.c_str());
          if (v.json) {
            std::printf("%s\n",
                        nlohmann::json({{"path", p.path}, {"error", p.error}}).dump().c_str());
          }
        } else if (v.json) {
          print_json(p, classes);
        } else {
          print_text(p, classes);
        }
        std::fflush(stdout);
      });
  if (failed > 0) {
    std::fprintf(stderr, "predict: %lld of %zu image(s) could not be classified\n",
                 static_cast<long long>(failed), paths.size());
    return 3;
  }
  return 0;
}

}  // namespace

Command predict_command() {
  return make_command<PredictValues>(
      "predict", "top classes of image files under a saved model (exit 3: some skipped)", declare,
      run);
}

}  // namespace nextvit::cli
