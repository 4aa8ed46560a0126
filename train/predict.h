#pragma once
// `nextvit predict`: classifies image files with a saved model. Each file is decoded by the data
// loaders' decoders (train/data/image_folder.h: libjpeg/libpng or stb_image behind image_guard's
// checks, any gray/RGB/RGBA/16-bit PNG made 8-bit RGB), sized against the pixel limit from its
// header before any pixel is allocated, put through the model's evaluation transform
// (train/data/preprocess.h) and classified in batches. A file that cannot be read or decoded is
// reported, with its reason, and skipped; the others are still classified.
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "models/model_metadata.h"
#include "models/nextvit.h"
#include "train/data/image_guard.h"

namespace nextvit {

struct ClassScore {
  int64_t label = 0;
  double probability = 0;  // softmax of the logits
};

struct Prediction {
  std::string path;
  std::string error;            // empty when classified
  std::vector<ClassScore> top;  // the top_k classes, most probable first
  std::vector<float> logits;    // all of them (num_classes)
};

struct PredictOptions {
  int64_t top_k = 5;
  int64_t batch = 32;
  Device device;
  int64_t max_pixels = data::kDefaultMaxImagePixels;
};

// The files named by `inputs`: a file as given (even without an image extension: the decoder
// decides), a folder's .jpg/.jpeg/.png/.bmp files at any depth, sorted, hidden ones left out.
// A path that does not exist is kept, so that predict_images reports it like any unreadable file.
std::vector<std::string> list_images(const std::vector<std::string>& inputs);

// Classifies `paths` with `model` (eval mode, on options.device) after `preprocess`; calls
// `report` once per path, in order, as each batch finishes. Returns how many failed.
int64_t predict_images(NextViT& model, const Preprocess& preprocess,
                       const std::vector<std::string>& paths, const PredictOptions& options,
                       const std::function<void(const Prediction&)>& report);

}  // namespace nextvit
