// nextvit predict: the top classes of image files (or folders of them) under a saved model.
// Exit status 0 when every image was classified, 3 when some could not be read (each reported on
// stderr with its reason and skipped), 1 on any other error.
#include <cstdio>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/args.h"
#include "models/saved_model.h"
#include "train/data/preprocess.h"
#include "train/predict.h"

namespace nextvit::cli {
namespace {

const std::map<std::string, int> kSpec = {{"weights", 1}, {"model", 1},           {"top-k", 1},
                                          {"json", 0},    {"device", 1},          {"batch", 1},
                                          {"img", 1},     {"max-image-pixels", 1}};

// Splits argv into the options (with their values, for Args) and the image paths around them.
std::vector<std::string> take_paths(int argc, char** argv, std::vector<char*>& options) {
  std::vector<std::string> paths;
  options = {argv[0], argv[1]};
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      paths.push_back(a);
      continue;
    }
    options.push_back(argv[i]);
    auto it = kSpec.find(a.substr(2));
    for (int k = 0; it != kSpec.end() && k < it->second && i + 1 < argc; ++k) {
      options.push_back(argv[++i]);
    }
  }
  return paths;
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

}  // namespace

int run_predict(int argc, char** argv) {
  std::vector<char*> option_argv;
  const std::vector<std::string> inputs = take_paths(argc, argv, option_argv);
  Args a(static_cast<int>(option_argv.size()), option_argv.data(), 2, kSpec, "predict");
  NV_CHECK(!inputs.empty(), "predict: name at least one image file or folder");
  const std::string weights = a.required("weights");
  PredictOptions o;
  o.top_k = a.integer("top-k", 5, 1, kMaxClasses);
  o.batch = a.integer("batch", 32, 1, 1 << 16);
  o.device = parse_device(a.str("device", "cpu"));
  o.max_pixels = a.integer("max-image-pixels", o.max_pixels, 1, int64_t(1) << 31);
  const bool json = a.has("json");

  SavedModel saved = load_saved_model(weights, a.str("model", ""));
  Preprocess preprocess;
  if (saved.metadata.preprocess) {
    preprocess = *saved.metadata.preprocess;
  } else {
    preprocess = data::imagenet_preprocess(224);
    std::fprintf(stderr,
                 "predict: %s does not record its preprocessing; using ImageNet's evaluation "
                 "transform (resize, centre crop, ImageNet mean and std)\n",
                 weights.c_str());
  }
  if (a.has("img")) preprocess.size = a.integer("img", 224, 1, kMaxImageSide);
  const std::vector<std::string>& classes = saved.metadata.classes;
  saved.model->to(o.device);

  const std::vector<std::string> paths = list_images(inputs);
  const int64_t failed =
      predict_images(*saved.model, preprocess, paths, o, [&](const Prediction& p) {
        if (!p.error.empty()) {
          std::fprintf(stderr, "predict: skipped %s: %s\n", p.path.c_str(), p.error.c_str());
          if (json) {
            std::printf("%s\n",
                        nlohmann::json({{"path", p.path}, {"error", p.error}}).dump().c_str());
          }
        } else if (json) {
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

}  // namespace nextvit::cli
