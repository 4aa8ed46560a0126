#include "train/data/preprocess.h"

#include <cmath>

#include "core/error.h"
#include "train/data/fashion_mnist.h"

namespace nextvit::data {

Preprocess fashion_mnist_preprocess(int64_t size) {
  Preprocess p;
  p.size = size;
  p.resize = "exact";
  p.crop_pct = 1.0;
  p.mean = {FashionMnist::kMean};
  p.std = {FashionMnist::kStd};
  p.gray_to_rgb = true;
  return p;
}

Preprocess imagenet_preprocess(int64_t size) {
  Preprocess p;
  p.size = size;
  p.resize = "center";
  p.crop_pct = 0.875;
  p.mean.assign(kImagenetMean.begin(), kImagenetMean.end());
  p.std.assign(kImagenetStd.begin(), kImagenetStd.end());
  p.gray_to_rgb = true;
  return p;
}

Pipeline eval_pipeline(const Preprocess& p) {
  NV_CHECK(p.size > 0 && p.size <= kMaxImageSide, "preprocessing: size {} out of range", p.size);
  const int size = static_cast<int>(p.size);
  Pipeline pipeline;
  if (p.resize == "center") {
    // As eval_pipeline(size, mean, std, crop_pct) in transforms.cpp (float crop_pct, floor).
    const float crop_pct = static_cast<float>(p.crop_pct);
    NV_CHECK(crop_pct > 0 && crop_pct <= 1, "preprocessing: crop_pct {} must be in (0, 1]",
             p.crop_pct);
    pipeline.add<ResizeShorter>(static_cast<int>(std::floor(size / crop_pct)))
        .add<CenterCrop>(size, size);
  } else {
    NV_CHECK(p.resize == "exact", "preprocessing: unknown resize \"{}\"", p.resize);
    pipeline.add<Resize>(size, size);
  }
  if (p.gray_to_rgb) pipeline.add<GrayToRgb>();
  pipeline.normalize(p.mean, p.std);
  return pipeline;
}

}  // namespace nextvit::data
