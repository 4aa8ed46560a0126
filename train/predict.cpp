#include "train/predict.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "autograd/variable.h"
#include "models/memory_estimate.h"
#include "train/data/image_folder.h"
#include "train/data/preprocess.h"

namespace nextvit {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> images_under(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file() && data::ImageFolder::is_image_file(it->path().string())) {
      files.push_back(it->path().string());
    }
  }
  NV_CHECK(!ec, "predict: cannot list {}: {}", dir, ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

// Top-k of the softmax of one row of logits, computed in double.
std::vector<ClassScore> top_classes(const float* logits, int64_t classes, int64_t k) {
  const double peak = *std::max_element(logits, logits + classes);
  std::vector<double> p(static_cast<size_t>(classes));
  double sum = 0;
  for (int64_t c = 0; c < classes; ++c) sum += p[c] = std::exp(double(logits[c]) - peak);
  std::vector<int64_t> order(static_cast<size_t>(classes));
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, classes);
  // Ties keep the lower label first, as argmax does.
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  std::vector<ClassScore> top;
  for (int64_t i = 0; i < k; ++i) top.push_back({order[i], p[order[i]] / sum});
  return top;
}

}  // namespace

std::vector<std::string> list_images(const std::vector<std::string>& inputs) {
  std::vector<std::string> paths;
  for (const std::string& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<std::string> files = images_under(in);
      NV_CHECK(!files.empty(), "predict: {} holds no .jpg/.jpeg/.png/.bmp file", in);
      paths.insert(paths.end(), files.begin(), files.end());
    } else {
      paths.push_back(in);
    }
  }
  return paths;
}

int64_t predict_images(NextViT& model, const Preprocess& preprocess,
                       const std::vector<std::string>& paths, const PredictOptions& options,
                       const std::function<void(const Prediction&)>& report) {
  const NextViTConfig& config = model.config();
  NV_CHECK(config.in_channels == 3,
           "predict: the model takes {} input channels; images are decoded to RGB (3)",
           config.in_channels);
  NV_CHECK(options.batch > 0 && options.top_k > 0, "predict: batch and top-k must be positive");
  const int64_t size = preprocess.size;
  config.validate_input(size, size);
  check_memory_fits(config, options.batch, size, size, false, "predict");
  const data::Pipeline pipeline = data::eval_pipeline(preprocess);
  const int64_t per_image = 3 * size * size;
  int64_t failed = 0;

  for (size_t first = 0; first < paths.size(); first += static_cast<size_t>(options.batch)) {
    const size_t n = std::min(paths.size() - first, static_cast<size_t>(options.batch));
    std::vector<Prediction> results(n);
    std::vector<float> pixels(n * per_image);
    // Decoding and the transform run in parallel, one image per iteration; the eval transform
    // draws no random numbers, so the Generator is a formality.
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < n; ++i) {
      Prediction& r = results[i];
      r.path = paths[first + i];
      data::Image img;
      if (!data::decode_image_file(r.path, img, r.error, options.max_pixels)) continue;
      try {
        Generator unused;
        pipeline.augment(img, unused);
        NV_CHECK(img.height == size && img.width == size && img.channels == 3,
                 "the transform made a {}x{}x{} image", img.height, img.width, img.channels);
        pipeline.to_chw(img, pixels.data() + i * per_image);
      } catch (const std::exception& e) {
        r.error = e.what();
      }
    }
    // The images that decoded, packed into one batch.
    std::vector<size_t> good;
    for (size_t i = 0; i < n; ++i) {
      if (results[i].error.empty()) good.push_back(i);
    }
    if (!good.empty()) {
      Tensor x = Tensor::empty({static_cast<int64_t>(good.size()), 3, size, size});
      float* dst = x.data<float>();
      for (size_t j = 0; j < good.size(); ++j) {
        std::copy_n(pixels.data() + good[j] * per_image, per_image, dst + j * per_image);
      }
      Tensor logits;
      {
        NoGradGuard no_grad;
        logits = model.forward(Variable(x.to(options.device))).data().cpu();
      }
      const std::vector<float> l = logits.to_vector();
      const int64_t k = config.num_classes;
      for (size_t j = 0; j < good.size(); ++j) {
        Prediction& r = results[good[j]];
        r.logits.assign(l.begin() + j * k, l.begin() + (j + 1) * k);
        r.top = top_classes(r.logits.data(), k, options.top_k);
      }
    }
    for (const Prediction& r : results) {
      failed += !r.error.empty();
      report(r);
    }
  }
  return failed;
}

}  // namespace nextvit
