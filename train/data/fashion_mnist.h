#pragma once
// Fashion-MNIST (Zalando): 60000 training and 10000 test images, 28x28 gray, 10 classes. The
// whole split is read into memory once (47 MB for training), so get() is a 784-byte copy.
//
// Files are looked for in `dir`, else $NEXTVIT_FASHION_MNIST, else Debian's package
// dataset-fashion-mnist at /usr/share/datasets/fashion-mnist, as
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
#include <string>
#include <vector>

#include "train/data/dataset.h"

namespace nextvit::data {

enum class Split { Train, Test };

class FashionMnist final : public Dataset {
 public:
  static constexpr const char* kDebianDir = "/usr/share/datasets/fashion-mnist";
  static constexpr float kMean = 0.2860f;  // of the training pixels scaled to [0, 1]
  static constexpr float kStd = 0.3530f;

  // The directory that an empty `dir` argument resolves to (the environment, then Debian's).
  static std::string default_dir();
  // True when both files of the split exist in `dir` (empty: default_dir()).
  static bool available(Split split, const std::string& dir = "");

  explicit FashionMnist(Split split, const std::string& dir = "");

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  int64_t num_classes() const override { return 10; }
  const std::vector<std::string>& class_names() const override;
  int64_t get(int64_t index, Image& out) const override;
  std::string describe() const override;

  int height() const { return height_; }
  int width() const { return width_; }
  // The raw arrays: N*H*W pixels and N labels.
  const std::vector<uint8_t>& pixels() const { return pixels_; }
  const std::vector<uint8_t>& labels() const { return labels_; }

 private:
  Split split_;
  std::string dir_;
  int height_ = 0, width_ = 0;
  std::vector<uint8_t> pixels_;
  std::vector<uint8_t> labels_;
};

}  // namespace nextvit::data
