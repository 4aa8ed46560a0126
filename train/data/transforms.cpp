#include "train/data/transforms.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "train/data/resize.h"

namespace nextvit::data {
namespace {

// Python's round(): halves go to the even neighbour (the default floating-point rounding mode),
// which torchvision's crop arithmetic relies on.
int py_round(double v) {
  return static_cast<int>(std::nearbyint(v));
}

void check_size(const char* op, int h, int w) {
  NV_CHECK(h > 0 && w > 0, "{}: output size {}x{} must be positive", op, h, w);
}

}  // namespace

// ---- functional forms ------------------------------------------------------------------------

CropBox random_resized_crop_box(int height, int width, Generator& g, float scale_lo, float scale_hi,
                                float ratio_lo, float ratio_hi) {
  NV_CHECK(height > 0 && width > 0, "random_resized_crop: empty {}x{} image", height, width);
  NV_CHECK(0 < scale_lo && scale_lo <= scale_hi && scale_hi <= 1,
           "random_resized_crop: scale ({}, {}) must satisfy 0 < lo <= hi <= 1", scale_lo,
           scale_hi);
  NV_CHECK(0 < ratio_lo && ratio_lo <= ratio_hi,
           "random_resized_crop: ratio ({}, {}) must satisfy 0 < lo <= hi", ratio_lo, ratio_hi);
  const double area = double(height) * width;
  const float log_lo = std::log(ratio_lo), log_hi = std::log(ratio_hi);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * g.uniform(scale_lo, scale_hi);
    const double aspect = std::exp(double(g.uniform(log_lo, log_hi)));
    const int w = py_round(std::sqrt(target_area * aspect));
    const int h = py_round(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const int top = static_cast<int>(g.randint(height - h + 1));
      const int left = static_cast<int>(g.randint(width - w + 1));
      return {top, left, h, w};
    }
  }
  // Fallback: the largest central box whose aspect ratio is within range.
  const double in_ratio = double(width) / height;
  int w = width, h = height;
  if (in_ratio < ratio_lo) {
    h = py_round(w / double(ratio_lo));
  } else if (in_ratio > ratio_hi) {
    w = py_round(h * double(ratio_hi));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

void hflip(Image& img) {
  const int C = img.channels;
  for (int y = 0; y < img.height; ++y) {
    uint8_t* row = &img.pixels[size_t(y) * img.width * C];
    for (int a = 0, b = img.width - 1; a < b; ++a, --b) {
      for (int c = 0; c < C; ++c) std::swap(row[size_t(a) * C + c], row[size_t(b) * C + c]);
    }
  }
}

Image center_crop(const Image& img, int out_h, int out_w) {
  check_size("center_crop", out_h, out_w);
  // torchvision pads a smaller image symmetrically (the extra pixel at the end) and then crops;
  // both amount to this offset, negative where the window sticks out.
  auto offset = [](int in, int out) {
    return in >= out ? py_round((in - out) / 2.0) : -((out - in) / 2);
  };
  const int top = offset(img.height, out_h), left = offset(img.width, out_w);
  const int C = img.channels;
  Image out(out_h, out_w, C);  // zero-filled
  for (int y = 0; y < out_h; ++y) {
    const int sy = top + y;
    if (sy < 0 || sy >= img.height) continue;
    const int x0 = std::max(0, -left), x1 = std::min(out_w, img.width - left);
    if (x0 >= x1) continue;
    const uint8_t* src = &img.pixels[(size_t(sy) * img.width + (left + x0)) * C];
    std::copy(src, src + size_t(x1 - x0) * C, &out.pixels[(size_t(y) * out_w + x0) * C]);
  }
  return out;
}

Image resize_shorter(const Image& img, int size) {
  NV_CHECK(size > 0, "resize_shorter: size {} must be positive", size);
  int h = size, w = size;
  if (img.width <= img.height) {
    h = static_cast<int>(int64_t(size) * img.height / img.width);
  } else {
    w = static_cast<int>(int64_t(size) * img.width / img.height);
  }
  return resize(img, h, w);
}

Image gray_to_rgb(const Image& img) {
  if (img.channels == 3) return img;
  NV_CHECK(img.channels == 1, "gray_to_rgb: expects 1 or 3 channels, got {}", img.channels);
  Image out(img.height, img.width, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) {
    out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = img.pixels[i];
  }
  return out;
}

// ---- transforms ----------------------------------------------------------------------------

Resize::Resize(int height, int width) : height_(height), width_(width) {
  check_size("Resize", height, width);
}
void Resize::apply(Image& img, Generator&) const {
  if (img.height != height_ || img.width != width_) img = resize(img, height_, width_);
}
std::string Resize::describe() const {
  return fmt::format("Resize({}x{})", height_, width_);
}

ResizeShorter::ResizeShorter(int size) : size_(size) {
  check_size("ResizeShorter", size, size);
}
void ResizeShorter::apply(Image& img, Generator&) const {
  img = resize_shorter(img, size_);
}
std::string ResizeShorter::describe() const {
  return fmt::format("ResizeShorter({})", size_);
}

RandomResizedCrop::RandomResizedCrop(int height, int width, std::array<float, 2> scale,
                                     std::array<float, 2> ratio)
    : height_(height), width_(width), scale_(scale), ratio_(ratio) {
  check_size("RandomResizedCrop", height, width);
  NV_CHECK(0 < scale[0] && scale[0] <= scale[1] && scale[1] <= 1,
           "RandomResizedCrop: scale ({}, {}) must satisfy 0 < lo <= hi <= 1", scale[0], scale[1]);
  NV_CHECK(0 < ratio[0] && ratio[0] <= ratio[1],
           "RandomResizedCrop: ratio ({}, {}) must satisfy 0 < lo <= hi", ratio[0], ratio[1]);
}
void RandomResizedCrop::apply(Image& img, Generator& g) const {
  const CropBox b =
      random_resized_crop_box(img.height, img.width, g, scale_[0], scale_[1], ratio_[0], ratio_[1]);
  img = resize_crop(img, b.top, b.left, b.height, b.width, height_, width_);
}
std::string RandomResizedCrop::describe() const {
  return fmt::format("RandomResizedCrop({}x{}, scale ({:g}, {:g}), ratio ({:.3g}, {:.3g}))",
                     height_, width_, scale_[0], scale_[1], ratio_[0], ratio_[1]);
}

RandomHorizontalFlip::RandomHorizontalFlip(float p) : p_(p) {
  NV_CHECK(p >= 0 && p <= 1, "RandomHorizontalFlip: p = {} is not a probability", p);
}
void RandomHorizontalFlip::apply(Image& img, Generator& g) const {
  if (g.uniform() < p_) hflip(img);
}
std::string RandomHorizontalFlip::describe() const {
  return fmt::format("RandomHorizontalFlip(p {:g})", p_);
}

CenterCrop::CenterCrop(int height, int width) : height_(height), width_(width) {
  check_size("CenterCrop", height, width);
}
void CenterCrop::apply(Image& img, Generator&) const {
  if (img.height != height_ || img.width != width_) img = center_crop(img, height_, width_);
}
std::string CenterCrop::describe() const {
  return fmt::format("CenterCrop({}x{})", height_, width_);
}

void GrayToRgb::apply(Image& img, Generator&) const {
  if (img.channels != 3) img = gray_to_rgb(img);
}

// ---- pipeline ------------------------------------------------------------------------------

Pipeline::Pipeline() {
  normalize({0.0f}, {1.0f});
}

Pipeline& Pipeline::add(std::shared_ptr<const Transform> t) {
  NV_CHECK(t != nullptr, "Pipeline::add: null transform");
  steps_.push_back(std::move(t));
  return *this;
}

Pipeline& Pipeline::normalize(std::vector<float> mean, std::vector<float> stddev) {
  NV_CHECK(!mean.empty() && mean.size() == stddev.size(),
           "Pipeline::normalize: {} means and {} stds; give one pair per channel (or one for all)",
           mean.size(), stddev.size());
  for (float s : stddev) NV_CHECK(s > 0, "Pipeline::normalize: std {} must be positive", s);
  mean_ = std::move(mean);
  std_ = std::move(stddev);
  lut_.resize(mean_.size() * 256);
  for (size_t c = 0; c < mean_.size(); ++c) {
    for (int v = 0; v < 256; ++v) lut_[c * 256 + v] = (v / 255.0f - mean_[c]) / std_[c];
  }
  return *this;
}

void Pipeline::augment(Image& img, Generator& g) const {
  for (const auto& t : steps_) t->apply(img, g);
}

void Pipeline::to_chw(const Image& img, float* out) const {
  const int C = img.channels;
  NV_CHECK(mean_.size() == 1 || int(mean_.size()) == C,
           "Pipeline::to_chw: the image has {} channels but normalize has {} means", C,
           mean_.size());
  const size_t plane = size_t(img.height) * img.width;
  // HWC -> CHW: one pass over the bytes per channel plane (strided reads, sequential writes).
  for (int c = 0; c < C; ++c) {
    const float* lut = &lut_[(mean_.size() == 1 ? 0 : size_t(c)) * 256];
    float* o = out + size_t(c) * plane;
    const uint8_t* p = img.pixels.data() + c;
    for (size_t i = 0; i < plane; ++i) o[i] = lut[p[i * C]];
  }
}

std::string Pipeline::describe() const {
  std::string s;
  for (const auto& t : steps_) s += t->describe() + " -> ";
  return s + fmt::format("Normalize(mean {}, std {})", mean_, std_);
}

Pipeline train_pipeline(int size, const std::vector<float>& mean, const std::vector<float>& stddev,
                        std::array<float, 2> scale) {
  Pipeline p;
  p.add<RandomResizedCrop>(size, size, scale).add<RandomHorizontalFlip>(0.5f).add<GrayToRgb>();
  p.normalize(mean, stddev);
  return p;
}

Pipeline eval_pipeline(int size, const std::vector<float>& mean, const std::vector<float>& stddev,
                       float crop_pct) {
  NV_CHECK(crop_pct > 0 && crop_pct <= 1, "eval_pipeline: crop_pct {} must be in (0, 1]", crop_pct);
  Pipeline p;
  p.add<ResizeShorter>(static_cast<int>(std::floor(size / crop_pct)))
      .add<CenterCrop>(size, size)
      .add<GrayToRgb>();
  p.normalize(mean, stddev);
  return p;
}

}  // namespace nextvit::data
