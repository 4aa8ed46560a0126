#pragma once
// The evaluation transform as data (Preprocess, models/model_metadata.h) and as a Pipeline. The
// trainer builds its evaluation pipeline from the Preprocess it stores in model.safetensors, and
// `predict` builds its own from the stored one, so the two cannot drift apart.
#include "models/model_metadata.h"
#include "train/data/transforms.h"

namespace nextvit::data {

// Fashion-MNIST at `size`: the whole 28x28 image resized to size x size (nothing done at 28),
// gray repeated to RGB, the training set's mean and std.
Preprocess fashion_mnist_preprocess(int64_t size);
// Image folders and ImageNet: shorter side to size / 0.875, centre crop, ImageNet statistics.
Preprocess imagenet_preprocess(int64_t size);

// "exact": Resize(size, size); "center": ResizeShorter(floor(size / crop_pct)) ->
// CenterCrop(size); then GrayToRgb when asked, then Normalize(mean, std).
Pipeline eval_pipeline(const Preprocess& p);

}  // namespace nextvit::data
