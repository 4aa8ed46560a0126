// nextvit info: parameters and MACs per stage, as a table or one JSON object.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/args.h"
#include "models/nextvit_info.h"

namespace nextvit::cli {

int run_info(int argc, char** argv) {
  Args args(argc, argv, 2, {{"model", 1}, {"img", 2}, {"num-classes", 1}, {"json", 0}}, "info");
  NextViTConfig config = NextViTConfig::from_name(args.str("model", "nextvit_small"));
  config.num_classes = args.integer("num-classes", config.num_classes, 1, kMaxClasses);
  const int64_t h = args.integer("img", 224, 1, kMaxImageSide, 0);
  const int64_t w = args.integer("img", 224, 1, kMaxImageSide, 1);
  config.validate();
  config.validate_input(h, w);
  NextViT model(config);
  ModelInfo info = analyze(model, h, w);

  if (args.has("json")) {
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

}  // namespace nextvit::cli
