#pragma once
// Options that mean the same in every command that has them, declared by one function each so
// that their names, values, ranges and help text cannot differ between commands.
#include <cstdint>
#include <limits>
#include <string>

#include "core/args.h"
#include "core/device.h"
#include "models/nextvit_config.h"

namespace nextvit::cli {

// Counts of steps and images: any non-negative value a run could reach, with room to add.
constexpr int64_t kMaxCount = std::numeric_limits<int64_t>::max() / 4;

// --model NAME|CONFIG.json
inline Options& model_option(Options& o, std::string* model) {
  return o.text("model", model, "NAME|CONFIG.json",
                "nextvit_fmnist, nextvit_small, nextvit_base, nextvit_large, or a JSON "
                "configuration file of a reduced Next-ViT");
}

// --img S | --img H W. square_only: the command's data pipeline crops squares (train, eval).
inline Options& image_option(Options& o, int64_t* height, int64_t* width,
                             bool square_only = false) {
  return o.image("img", height, width, kMaxImageSide, square_only);
}

// --device cpu|cuda[:N]
inline Options& device_option(Options& o, Device* device) {
  return o.device("device", device, "where the model runs");
}

// --num-classes K (0 keeps the model configuration's own)
inline Options& num_classes_option(Options& o, int64_t* classes) {
  return o.integer("num-classes", classes, "K", 1, kMaxClasses, "number of output classes")
      .shown_default("the model's own");
}

}  // namespace nextvit::cli
