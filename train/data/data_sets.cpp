#include "train/data/data_sets.h"

#include <filesystem>

#include "core/error.h"
#include "train/data/fashion_mnist.h"
#include "train/data/image_folder.h"

namespace nextvit::data {
namespace fs = std::filesystem;

namespace {

// The first `limit` samples of a data set.
class Subset final : public Dataset {
 public:
  Subset(std::shared_ptr<const Dataset> base, int64_t limit)
      : base_(std::move(base)), size_(std::min(limit, base_->size())) {}
  int64_t size() const override { return size_; }
  int64_t num_classes() const override { return base_->num_classes(); }
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }
  int64_t get(int64_t i, Image& out) const override { return base_->get(i, out); }
  std::string describe() const override {
    return base_->describe() + fmt::format(" (first {} used)", size_);
  }
  int64_t take_replaced_count() const override { return base_->take_replaced_count(); }

 private:
  std::shared_ptr<const Dataset> base_;
  int64_t size_;
};

std::shared_ptr<const Dataset> limited(std::shared_ptr<const Dataset> d, int64_t limit) {
  if (limit > 0 && limit < d->size()) return std::make_shared<Subset>(d, limit);
  return d;
}

// `data`'s train/ or val/ folder, after checking the layout.
std::shared_ptr<const Dataset> folder_split(const std::string& data, const char* split,
                                            int64_t max_image_pixels) {
  const fs::path root(data);
  NV_CHECK(fs::is_directory(root / "train") && fs::is_directory(root / "val"),
           "--data {}: expected 'fashion-mnist' or a folder with train/ and val/ image folders",
           data);
  return std::make_shared<ImageFolder>((root / split).string(), true, max_image_pixels);
}

}  // namespace

TrainingSet training_set(const std::string& data, int64_t img, bool flip, bool random_resized_crop,
                         int64_t limit, int64_t max_image_pixels) {
  TrainingSet t;
  const int size = static_cast<int>(img);
  if (data == "fashion-mnist") {
    t.images = std::make_shared<FashionMnist>(Split::Train);
    const std::vector<float> mean{FashionMnist::kMean}, std{FashionMnist::kStd};
    auto pipeline = std::make_shared<Pipeline>();
    if (random_resized_crop) {
      pipeline->add<RandomResizedCrop>(size, size, std::array<float, 2>{0.35f, 1.0f});
    } else if (size != 28) {
      pipeline->add<Resize>(size, size);
    }
    if (flip) pipeline->add<RandomHorizontalFlip>(0.5f);
    pipeline->add<GrayToRgb>().normalize(mean, std);
    t.pipeline = pipeline;
  } else {
    t.images = folder_split(data, "train", max_image_pixels);
    // With one class every prediction is right: such a folder cannot teach anything.
    NV_CHECK(t.images->num_classes() >= 2,
             "--data {}: {} has {} class folder(s); classification needs at least 2", data,
             (fs::path(data) / "train").string(), t.images->num_classes());
    const std::vector<float> mean(kImagenetMean.begin(), kImagenetMean.end());
    const std::vector<float> std(kImagenetStd.begin(), kImagenetStd.end());
    t.pipeline = std::make_shared<Pipeline>(train_pipeline(size, mean, std));
  }
  t.images = limited(t.images, limit);
  return t;
}

EvaluationSet evaluation_set(const std::string& data, int64_t img, int64_t limit,
                             int64_t max_image_pixels) {
  EvaluationSet e;
  if (data == "fashion-mnist") {
    e.images = std::make_shared<FashionMnist>(Split::Test);
    e.preprocess = fashion_mnist_preprocess(img);
  } else {
    e.images = folder_split(data, "val", max_image_pixels);
    e.preprocess = imagenet_preprocess(img);
  }
  e.pipeline = std::make_shared<Pipeline>(eval_pipeline(e.preprocess));
  e.images = limited(e.images, limit);
  return e;
}

void check_same_classes(const std::string& data, const Dataset& train, const Dataset& eval) {
  NV_CHECK(eval.class_names() == train.class_names(),
           "--data {}: the class folders of {} ({}) differ from those of {} ({})", data,
           (fs::path(data) / "val").string(), fmt::join(eval.class_names(), ", "),
           (fs::path(data) / "train").string(), fmt::join(train.class_names(), ", "));
}

}  // namespace nextvit::data
