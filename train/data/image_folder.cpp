#include "train/data/image_folder.h"

#include <stb_image.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>

#include "core/error.h"
#include "train/data/gzip.h"
#include "train/data/image_guard.h"
#include "train/data/system_decoders.h"

namespace nextvit::data {

namespace fs = std::filesystem;

bool decode_image_file(const std::string& path, Image& out, std::string& reason,
                       int64_t max_pixels) {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file(path);
  } catch (const Error& e) {
    reason = e.what();
    return false;
  }
  return decode_image_bytes(bytes, out, reason, max_pixels);
}

bool decode_image_bytes(const std::vector<uint8_t>& bytes, Image& out, std::string& reason,
                        int64_t max_pixels) {
  // Header, Huffman tables and size first: nothing is allocated for a file that lies.
  int w = 0, h = 0, c = 0;
  if (!check_image_bytes(bytes.data(), bytes.size(), true, max_pixels, w, h, reason)) return false;
  bool handled = false;
  const bool decoded = decode_with_system_libraries(bytes, max_pixels, out, reason, &handled);
  if (handled) return decoded;
  // Ask for 3 channels: stb converts gray, gray+alpha and RGBA to RGB while decoding.
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &c, 3),
      stbi_image_free);
  if (pixels == nullptr) {
    const char* why = stbi_failure_reason();
    reason = std::string("stb_image: ") + (why != nullptr ? why : "no reason");
    return false;
  }
  out.height = h;
  out.width = w;
  out.channels = 3;
  out.pixels.assign(pixels.get(), pixels.get() + size_t(h) * w * 3);
  return true;
}

namespace {

// The first bytes of a file: enough for every header stbi_info reads (and the DHT segments
// before it), without reading whole images while scanning a folder.
std::vector<uint8_t> read_prefix(const std::string& path, size_t limit, bool& complete) {
  std::vector<uint8_t> bytes(limit);
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (f == nullptr) {
    complete = true;
    return {};
  }
  bytes.resize(std::fread(bytes.data(), 1, limit, f.get()));
  complete = bytes.size() < limit;
  return bytes;
}

}  // namespace

bool ImageFolder::is_image_file(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

ImageFolder::ImageFolder(const std::string& root, bool check_headers, int64_t max_pixels)
    : root_(root), max_pixels_(max_pixels) {
  try {
    scan(check_headers);
  } catch (const fs::filesystem_error& e) {
    NV_FAIL("image folder: cannot list {}: {}", root, e.what());
  }
}

void ImageFolder::scan(bool check_headers) {
  const std::string& root = root_;
  std::error_code ec;
  NV_CHECK(fs::is_directory(root, ec), "image folder: {} is not a directory", root);
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name[0] != '.') classes_.push_back(name);
  }
  std::sort(classes_.begin(), classes_.end());
  NV_CHECK(!classes_.empty(),
           "image folder: {} has no class sub-directories (expected ROOT/<class>/<image>)", root);

  for (size_t label = 0; label < classes_.size(); ++label) {
    const fs::path dir = fs::path(root) / classes_[label];
    std::vector<std::string> files;
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      if (!entry.is_regular_file() || entry.path().filename().string()[0] == '.') continue;
      if (is_image_file(entry.path().string())) files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
    size_t kept = 0;
    for (const std::string& path : files) {
      int w, h;
      std::string reason;
      bool complete = false;
      const std::vector<uint8_t> head =
          check_headers ? read_prefix(path, 1 << 20, complete) : std::vector<uint8_t>();
      if (check_headers &&
          !check_image_bytes(head.data(), head.size(), complete, max_pixels_, w, h, reason)) {
        skipped_.push_back(path + " (" + reason + ")");
        std::cerr << "warning: image folder: skipping " << skipped_.back() << "\n";
        continue;
      }
      samples_.push_back({path, static_cast<int64_t>(label)});
      ++kept;
    }
    NV_CHECK(kept > 0, "image folder: class '{}' ({}) has no readable .jpg/.jpeg/.png/.bmp file",
             classes_[label], dir.string());
  }
}

int64_t ImageFolder::get(int64_t index, Image& out) const {
  NV_CHECK(index >= 0 && index < size(), "image folder: sample {} out of range [0, {})", index,
           size());
  // Walk forward from `index` to the first sample that decodes (almost always `index` itself).
  for (int64_t k = 0; k < size(); ++k) {
    const int64_t i = (index + k) % size();
    std::string reason;
    if (decode_image_file(samples_[size_t(i)].path, out, reason, max_pixels_)) {
      return samples_[size_t(i)].label;
    }
    replaced_.fetch_add(1);
    std::lock_guard<std::mutex> lock(warned_mutex_);
    if (warned_.insert(i).second) {
      std::cerr << "warning: image folder: cannot decode " << samples_[size_t(i)].path << " ("
                << reason << "); using the next sample in its place (reported once per file)\n";
    }
  }
  NV_FAIL("image folder: none of the {} images under {} can be decoded", size(), root_);
}

std::string ImageFolder::describe() const {
  return fmt::format("image folder {}: {} images, {} classes{}", root_, size(), num_classes(),
                     skipped_.empty() ? "" : fmt::format(", {} files skipped", skipped_.size()));
}

}  // namespace nextvit::data
