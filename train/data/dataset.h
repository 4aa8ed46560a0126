#pragma once
// Dataset: an indexed collection of labelled images. The loader calls get() from several worker
// threads at once, so implementations must be safe for concurrent const calls.
#include <cstdint>
#include <string>
#include <vector>

#include "train/data/image.h"

namespace nextvit::data {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int64_t num_classes() const = 0;
  // Class names indexed by label.
  virtual const std::vector<std::string>& class_names() const = 0;
  // Decodes sample `index` (0 <= index < size()) into `out` and returns its label.
  virtual int64_t get(int64_t index, Image& out) const = 0;
  // One line for logs: "fashion-mnist train: 60000 images 28x28x1, 10 classes".
  virtual std::string describe() const = 0;
  // How many get() calls since the last call returned another sample in place of one that could
  // not be decoded (reported once per epoch by the trainer); 0 for data sets that never do.
  virtual int64_t take_replaced_count() const { return 0; }
};

}  // namespace nextvit::data
