#pragma once
// Data augmentation and the image -> tensor step, as a Pipeline of Transforms.
//
// Transforms work on uint8 HWC Images (train/data/image.h) and draw every random number from the
// Generator they are handed; the loader gives each sample its own Generator seeded from (seed,
// epoch, sample index), so a run is reproducible whatever the number of worker threads. The
// semantics follow torchvision: RandomResizedCrop's area/aspect sampling with 10 attempts and a
// centre-crop fallback, antialiased bilinear resizing, CenterCrop's rounding and zero padding.
//
// A Pipeline runs its transforms in order, then writes the image as float CHW:
// out[c][y][x] = (pixel / 255 - mean[c]) / std[c], straight into the caller's batch buffer.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "train/data/image.h"

namespace nextvit::data {

// ---- functional forms ------------------------------------------------------------------------

struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
};

// torchvision RandomResizedCrop.get_params: up to 10 draws of an area fraction in
// [scale_lo, scale_hi] and a log-uniform aspect ratio (w/h) in [ratio_lo, ratio_hi]; the first
// box that fits is placed uniformly. Otherwise the central crop of the whole image clamped to the
// ratio range.
CropBox random_resized_crop_box(int height, int width, Generator& g, float scale_lo = 0.08f,
                                float scale_hi = 1.0f, float ratio_lo = 3.0f / 4.0f,
                                float ratio_hi = 4.0f / 3.0f);

// Mirrors columns in place.
void hflip(Image& img);

// The centred out_h x out_w window (torchvision rounding: top = round((H - out_h) / 2)); parts
// outside a smaller image are zero.
Image center_crop(const Image& img, int out_h, int out_w);

// Resizes so the shorter side becomes `size`, keeping the aspect ratio (torchvision Resize(int)).
Image resize_shorter(const Image& img, int size);

// Repeats a 1-channel image into 3 channels; a 3-channel image is returned unchanged.
Image gray_to_rgb(const Image& img);

// ---- transforms ----------------------------------------------------------------------------

class Transform {
 public:
  virtual ~Transform() = default;
  // Transforms the image in place. Must be safe to call from several threads at once (the
  // transform is immutable; all randomness comes from g).
  virtual void apply(Image& img, Generator& g) const = 0;
  virtual std::string describe() const = 0;
};

class Resize final : public Transform {
 public:
  Resize(int height, int width);
  void apply(Image& img, Generator& g) const override;
  std::string describe() const override;

 private:
  int height_, width_;
};

class ResizeShorter final : public Transform {
 public:
  explicit ResizeShorter(int size);
  void apply(Image& img, Generator& g) const override;
  std::string describe() const override;

 private:
  int size_;
};

class RandomResizedCrop final : public Transform {
 public:
  RandomResizedCrop(int height, int width, std::array<float, 2> scale = {0.08f, 1.0f},
                    std::array<float, 2> ratio = {3.0f / 4.0f, 4.0f / 3.0f});
  void apply(Image& img, Generator& g) const override;
  std::string describe() const override;

 private:
  int height_, width_;
  std::array<float, 2> scale_, ratio_;
};

class RandomHorizontalFlip final : public Transform {
 public:
  explicit RandomHorizontalFlip(float p = 0.5f);
  void apply(Image& img, Generator& g) const override;  // draws one number whatever p is
  std::string describe() const override;

 private:
  float p_;
};

class CenterCrop final : public Transform {
 public:
  CenterCrop(int height, int width);
  void apply(Image& img, Generator& g) const override;
  std::string describe() const override;

 private:
  int height_, width_;
};

class GrayToRgb final : public Transform {
 public:
  void apply(Image& img, Generator& g) const override;
  std::string describe() const override { return "GrayToRgb"; }
};

// ---- pipeline ------------------------------------------------------------------------------

class Pipeline {
 public:
  // An empty pipeline: no transforms, pixels scaled to [0, 1] (mean 0, std 1).
  Pipeline();

  Pipeline& add(std::shared_ptr<const Transform> t);
  template <typename T, typename... Args>
  Pipeline& add(Args&&... args) {
    return add(std::shared_ptr<const Transform>(std::make_shared<T>(std::forward<Args>(args)...)));
  }
  // Per-channel mean and std of pixels scaled to [0, 1]; one value applies to every channel.
  Pipeline& normalize(std::vector<float> mean, std::vector<float> stddev);

  // Runs the transforms in order.
  void augment(Image& img, Generator& g) const;
  // Writes img as normalised float CHW into out (img.channels * height * width floats).
  void to_chw(const Image& img, float* out) const;
  // "RandomResizedCrop(224x224, scale (0.08, 1), ratio (0.75, 1.33)) -> ... -> Normalize(...)"
  std::string describe() const;

 private:
  std::vector<std::shared_ptr<const Transform>> steps_;
  std::vector<float> mean_, std_;
  // lut_[c * 256 + v] = (v / 255 - mean[c]) / std[c]: normalising is one lookup per byte.
  std::vector<float> lut_;
};

// ImageNet's channel statistics (torchvision, timm).
constexpr std::array<float, 3> kImagenetMean = {0.485f, 0.456f, 0.406f};
constexpr std::array<float, 3> kImagenetStd = {0.229f, 0.224f, 0.225f};

// The usual recipes. Training: RandomResizedCrop(size) -> RandomHorizontalFlip -> GrayToRgb ->
// Normalize. Evaluation: ResizeShorter(size / crop_pct) -> CenterCrop(size) -> GrayToRgb ->
// Normalize (crop_pct 0.875 turns 224 into a 256 resize, as timm does).
Pipeline train_pipeline(int size, const std::vector<float>& mean, const std::vector<float>& stddev,
                        std::array<float, 2> scale = {0.08f, 1.0f});
Pipeline eval_pipeline(int size, const std::vector<float>& mean, const std::vector<float>& stddev,
                       float crop_pct = 0.875f);

}  // namespace nextvit::data
