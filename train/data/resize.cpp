#include "train/data/resize.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace nextvit::data {
namespace {

// For each output index i along one axis: the first input index `start[i]`, the tap count
// `count[i]` and the weights w[i * max_taps + k] of inputs start[i] + k, summing to 1.
struct Taps {
  std::vector<int> start, count;
  std::vector<float> weights;
  int max_taps = 0;
};

// torchvision's _compute_indices_weights_aa for the bilinear (triangle) filter.
Taps compute_taps(int in_size, int out_size) {
  const double scale = double(in_size) / out_size;
  const double support = scale >= 1.0 ? scale : 1.0;  // filter radius in input pixels
  const double inv = scale >= 1.0 ? 1.0 / scale : 1.0;
  Taps t;
  t.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.start.resize(size_t(out_size));
  t.count.resize(size_t(out_size));
  t.weights.assign(size_t(out_size) * t.max_taps, 0.0f);
  std::vector<double> w(size_t(t.max_taps));
  for (int i = 0; i < out_size; ++i) {
    const double center = scale * (i + 0.5);
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int n = std::min(hi - lo, t.max_taps);
    double total = 0;
    for (int k = 0; k < n; ++k) {
      const double x = std::fabs((lo + k - center + 0.5) * inv);
      w[size_t(k)] = x < 1.0 ? 1.0 - x : 0.0;
      total += w[size_t(k)];
    }
    t.start[size_t(i)] = lo;
    t.count[size_t(i)] = n;
    for (int k = 0; k < n; ++k) {
      t.weights[size_t(i) * t.max_taps + k] =
          static_cast<float>(total > 0 ? w[size_t(k)] / total : 0);
    }
  }
  return t;
}

uint8_t to_u8(float v) {
  return static_cast<uint8_t>(std::clamp(v + 0.5f, 0.0f, 255.0f));
}

}  // namespace

Image resize_crop(const Image& src, int top, int left, int crop_h, int crop_w, int out_h,
                  int out_w) {
  NV_CHECK(crop_h > 0 && crop_w > 0 && top >= 0 && left >= 0 && top + crop_h <= src.height &&
               left + crop_w <= src.width,
           "resize: crop window (top {}, left {}, {}x{}) is not inside the {}x{} image", top, left,
           crop_h, crop_w, src.height, src.width);
  NV_CHECK(out_h > 0 && out_w > 0, "resize: output size {}x{} must be positive", out_h, out_w);
  const int C = src.channels;
  Image out(out_h, out_w, C);
  if (crop_h == out_h && crop_w == out_w) {  // a plain crop: copy rows
    for (int y = 0; y < out_h; ++y) {
      const uint8_t* row = &src.pixels[(size_t(top + y) * src.width + left) * C];
      std::copy(row, row + size_t(out_w) * C, &out.pixels[size_t(y) * out_w * C]);
    }
    return out;
  }

  // Pass 1 (horizontal): each of the crop_h window rows to out_w columns, kept in float so the
  // second pass rounds only once. Pass 2 (vertical): mixes those rows into out_h rows.
  const Taps tx = compute_taps(crop_w, out_w);
  const Taps ty = compute_taps(crop_h, out_h);
  std::vector<float> rows(size_t(crop_h) * out_w * C);
  for (int y = 0; y < crop_h; ++y) {
    const uint8_t* in = &src.pixels[(size_t(top + y) * src.width + left) * C];
    float* o = &rows[size_t(y) * out_w * C];
    for (int x = 0; x < out_w; ++x) {
      const float* w = &tx.weights[size_t(x) * tx.max_taps];
      const uint8_t* p = in + size_t(tx.start[size_t(x)]) * C;
      for (int c = 0; c < C; ++c) {
        float acc = 0;
        for (int k = 0; k < tx.count[size_t(x)]; ++k) acc += w[k] * p[size_t(k) * C + c];
        o[size_t(x) * C + c] = acc;
      }
    }
  }
  const size_t row_len = size_t(out_w) * C;
  std::vector<float> acc(row_len);
  for (int y = 0; y < out_h; ++y) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    const float* w = &ty.weights[size_t(y) * ty.max_taps];
    for (int k = 0; k < ty.count[size_t(y)]; ++k) {
      const float* r = &rows[size_t(ty.start[size_t(y)] + k) * row_len];
      for (size_t j = 0; j < row_len; ++j) acc[j] += w[k] * r[j];
    }
    uint8_t* o = &out.pixels[size_t(y) * row_len];
    for (size_t j = 0; j < row_len; ++j) o[j] = to_u8(acc[j]);
  }
  return out;
}

Image resize(const Image& src, int out_h, int out_w) {
  return resize_crop(src, 0, 0, src.height, src.width, out_h, out_w);
}

}  // namespace nextvit::data
