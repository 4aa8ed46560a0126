#pragma once
// ImageFolder: the torchvision layout ROOT/<class>/**/<image>.{jpg,jpeg,png,bmp}. Class names
// are the sorted sub-directory names and their positions the labels; each class's files are
// sorted by path. Images are decoded by stb_image to RGB uint8 when get() asks for them (the
// loader's workers do that in parallel), so only paths are held in memory.
//
// Bad files never stop training. At construction each file's header is read (stbi_info, a few
// bytes) and a file stb cannot identify is skipped with a warning on stderr naming the path and
// stb's reason. A file whose header is fine but whose body fails to decode is found only in
// get(): it is reported once and the next decodable sample (index + 1, + 2, ...) is returned in
// its place, with that sample's label, so image and label always match.
#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "train/data/dataset.h"
#include "train/data/image_guard.h"

namespace nextvit::data {

class ImageFolder final : public Dataset {
 public:
  struct Sample {
    std::string path;
    int64_t label;
  };

  // check_headers = false skips the per-file header read (faster start on huge folders; bad
  // files are then found by get()).
  // Images above max_pixels are skipped at the scan (or, unchecked, refused when decoded).
  explicit ImageFolder(const std::string& root, bool check_headers = true,
                       int64_t max_pixels = kDefaultMaxImagePixels);
  // The same for a file's bytes in memory.
  bool decode_image_bytes(const std::vector<uint8_t>& bytes, Image& out, std::string& reason,
                          int64_t max_pixels = kDefaultMaxImagePixels);

  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  int64_t num_classes() const override { return static_cast<int64_t>(classes_.size()); }
  const std::vector<std::string>& class_names() const override { return classes_; }
  int64_t get(int64_t index, Image& out) const override;
  std::string describe() const override;
  int64_t take_replaced_count() const override { return replaced_.exchange(0); }

  const std::vector<Sample>& samples() const { return samples_; }
  // "path (stb_image: reason)" for every file skipped at construction.
  const std::vector<std::string>& skipped() const { return skipped_; }

  // The extensions read (lower case); others are ignored silently.
  static bool is_image_file(const std::string& path);

 private:
  void scan(bool check_headers);

  std::string root_;
  int64_t max_pixels_;
  mutable std::atomic<int64_t> replaced_{0};  // get() calls that fell back to another sample
  std::vector<std::string> classes_;
  std::vector<Sample> samples_;
  std::vector<std::string> skipped_;
  // Samples that failed to decode in get(), each warned about once.
  mutable std::mutex warned_mutex_;
  mutable std::set<int64_t> warned_;
};

// Decodes an image file to RGB uint8 HWC after image_guard's checks; returns false and sets
// `reason` on failure (a lying header, too many pixels, stb's reason).
bool decode_image_file(const std::string& path, Image& out, std::string& reason,
                       int64_t max_pixels = kDefaultMaxImagePixels);
// The same for a file's bytes in memory.
bool decode_image_bytes(const std::vector<uint8_t>& bytes, Image& out, std::string& reason,
                        int64_t max_pixels = kDefaultMaxImagePixels);

}  // namespace nextvit::data
