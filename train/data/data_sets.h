#pragma once
// The data sets a command names with --data: "fashion-mnist", or a folder with train/ and val/
// image folders inside. Training and evaluation sets are built separately, so that `eval` reads
// only the evaluation images.
#include <cstdint>
#include <memory>
#include <string>

#include "train/data/dataset.h"
#include "train/data/preprocess.h"

namespace nextvit::data {

// Images with their transform: the sample set and the pipeline that turns a sample into the
// network's input.
struct TrainingSet {
  std::shared_ptr<const Dataset> images;
  std::shared_ptr<const Pipeline> pipeline;
};

struct EvaluationSet {
  std::shared_ptr<const Dataset> images;
  std::shared_ptr<const Pipeline> pipeline;
  Preprocess preprocess;  // `pipeline` as data, stored in model.safetensors
};

// Fashion-MNIST: gray 28x28, resized only when another size is asked for, flipped (`flip`) or
// cropped at random (`random_resized_crop`), repeated to 3 channels, normalised with the
// training set's statistics. Image folders: the usual ImageNet recipe. `limit` > 0 keeps the
// first `limit` samples (quick runs and tests). A folder of fewer than 2 classes is refused.
TrainingSet training_set(const std::string& data, int64_t img, bool flip, bool random_resized_crop,
                         int64_t limit, int64_t max_image_pixels);

// The evaluation split (Fashion-MNIST's test set, a folder's val/) with the deterministic
// evaluation transform at `img`.
EvaluationSet evaluation_set(const std::string& data, int64_t img, int64_t limit,
                             int64_t max_image_pixels);

// Refuses evaluation classes that differ from the training classes: labels would be scored
// against the wrong names.
void check_same_classes(const std::string& data, const Dataset& train, const Dataset& eval);

}  // namespace nextvit::data
