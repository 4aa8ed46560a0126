#include "train/data/fashion_mnist.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "train/data/idx.h"

namespace nextvit::data {
namespace {

const char* split_prefix(Split split) {
  return split == Split::Train ? "train" : "t10k";
}

// The file for `stem` ("train-images-idx3-ubyte"): compressed if present, else plain.
std::string find_file(const std::string& dir, const std::string& stem) {
  namespace fs = std::filesystem;
  const fs::path gz = fs::path(dir) / (stem + ".gz");
  const fs::path plain = fs::path(dir) / stem;
  std::error_code ec;
  if (fs::is_regular_file(gz, ec)) return gz.string();
  if (fs::is_regular_file(plain, ec)) return plain.string();
  return "";
}

}  // namespace

std::string FashionMnist::default_dir() {
  const char* env = std::getenv("NEXTVIT_FASHION_MNIST");
  return env != nullptr && *env != '\0' ? env : kDebianDir;
}

bool FashionMnist::available(Split split, const std::string& dir) {
  const std::string d = dir.empty() ? default_dir() : dir;
  const std::string prefix = split_prefix(split);
  return !find_file(d, prefix + "-images-idx3-ubyte").empty() &&
         !find_file(d, prefix + "-labels-idx1-ubyte").empty();
}

FashionMnist::FashionMnist(Split split, const std::string& dir)
    : split_(split), dir_(dir.empty() ? default_dir() : dir) {
  const std::string prefix = split_prefix(split);
  const std::string images_stem = prefix + "-images-idx3-ubyte";
  const std::string labels_stem = prefix + "-labels-idx1-ubyte";
  const std::string images_path = find_file(dir_, images_stem);
  const std::string labels_path = find_file(dir_, labels_stem);
  NV_CHECK(!images_path.empty() && !labels_path.empty(),
           "fashion-mnist: {} or {}[.gz] not found in {} (install Debian's dataset-fashion-mnist "
           "or set NEXTVIT_FASHION_MNIST to the directory holding the files)",
           images_stem, labels_stem, dir_);

  IdxArray images = read_idx(images_path);
  NV_CHECK(images.dims.size() == 3,
           "fashion-mnist: {}: expected 3 dimensions (count, height, width), found {}", images_path,
           shape_str(images.dims));
  IdxArray labels = read_idx(labels_path);
  NV_CHECK(labels.dims.size() == 1, "fashion-mnist: {}: expected 1 dimension (count), found {}",
           labels_path, shape_str(labels.dims));
  NV_CHECK(images.dims[0] == labels.dims[0],
           "fashion-mnist: {} holds {} images but {} holds {} labels", images_path, images.dims[0],
           labels_path, labels.dims[0]);
  NV_CHECK(
      images.dims[1] > 0 && images.dims[2] > 0 && images.dims[1] < 65536 && images.dims[2] < 65536,
      "fashion-mnist: {}: implausible image size {}x{}", images_path, images.dims[1],
      images.dims[2]);
  for (size_t i = 0; i < labels.data.size(); ++i) {
    NV_CHECK(labels.data[i] < 10, "fashion-mnist: {}: label {} of sample {} is not in [0, 10)",
             labels_path, labels.data[i], i);
  }
  height_ = static_cast<int>(images.dims[1]);
  width_ = static_cast<int>(images.dims[2]);
  pixels_ = std::move(images.data);
  labels_ = std::move(labels.data);
}

const std::vector<std::string>& FashionMnist::class_names() const {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

int64_t FashionMnist::get(int64_t index, Image& out) const {
  NV_CHECK(index >= 0 && index < size(), "fashion-mnist: sample {} out of range [0, {})", index,
           size());
  const size_t n = size_t(height_) * width_;
  out.height = height_;
  out.width = width_;
  out.channels = 1;
  out.pixels.assign(pixels_.begin() + static_cast<std::ptrdiff_t>(n * index),
                    pixels_.begin() + static_cast<std::ptrdiff_t>(n * (index + 1)));
  return labels_[size_t(index)];
}

std::string FashionMnist::describe() const {
  return fmt::format("fashion-mnist {} ({}): {} images {}x{}x1, 10 classes",
                     split_ == Split::Train ? "train" : "test", dir_, size(), height_, width_);
}

}  // namespace nextvit::data
