// nextvit info: parameters and MACs per stage, as a table or one JSON object.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "common_options.h"
#include "models/nextvit_info.h"

namespace nextvit::cli {
namespace {

struct InfoValues {
  std::string model = "nextvit_small";
  int64_t height = 224, width = 224;
  int64_t num_classes = 0;  // 0: the model's own
  bool json = false;
};

void declare(Options& o, InfoValues& v) {
  model_option(o, &v.model);
  image_option(o, &v.height, &v.width);
  num_classes_option(o, &v.num_classes);
  o.flag("json", &v.json, "print one JSON object instead of the table");
}

int run(const InfoValues& v) {
  NextViTConfig config = NextViTConfig::from_name(v.model);
  if (v.num_classes > 0) config.num_classes = v.num_classes;
  const int64_t h = v.height, w = v.width;
  config.validate();
  config.validate_input(h, w);
  NextViT model(config);
  ModelInfo info = analyze(model, h, w);

  if (v.json) {
    nlohmann::json stages = nlohmann::json::array();
    for (const StageInfo& s : info.stages) {
      stages.push_back({{"name", s.name},
                        {"params", s.params},
                        {"macs", s.macs},
                        {"output", {s.channels, s.height, s.width}}});
    }
    nlohmann::json j = {
        {"model", info.model},   {"image", {h, w}},   {"num_classes", config.num_classes},
        {"params", info.params}, {"macs", info.macs}, {"stages", stages}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s at %lldx%lld, %lld classes\n\n", info.model.c_str(), (long long)h, (long long)w,
              (long long)config.num_classes);
  std::printf("%-8s %14s %14s   %s\n", "stage", "params", "MACs", "output (C, H, W)");
  for (const StageInfo& s : info.stages) {
    std::printf("%-8s %14lld %14lld   (%lld, %lld, %lld)\n", s.name.c_str(), (long long)s.params,
                (long long)s.macs, (long long)s.channels, (long long)s.height, (long long)s.width);
  }
  std::printf("%-8s %14lld %14lld\n\n", "total", (long long)info.params, (long long)info.macs);
  std::printf("%.2f M parameters, %.3f G multiply-accumulates\n", info.params / 1e6,
              info.macs / 1e9);
  return 0;
}

}  // namespace

Command info_command() {
  return make_command<InfoValues>(
      "info", "parameters and multiply-accumulates of a model, per stage", declare, run);
}

}  // namespace nextvit::cli
