#pragma once
// PatchEmbed: how an NCB or NTB changes resolution and width on entry.
//   stride 2:            AvgPool2d(2, 2, ceil_mode, count_include_pad=False) -> Conv1x1 -> BN
//   stride 1, in != out: Conv1x1 -> BN
//   otherwise:           identity (no parameters)
#include <memory>

#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/conv_bn.h"

namespace nextvit {

class PatchEmbed : public Module {
 public:
  PatchEmbed(int64_t in_channels, int64_t out_channels, int64_t stride);
  Variable forward(const Variable& x);
  bool is_identity() const { return conv == nullptr; }
  int64_t stride() const { return stride_; }

  std::shared_ptr<Conv2d> conv;     // null when identity
  std::shared_ptr<BatchNorm> norm;  // null when identity

 private:
  int64_t stride_;
};

}  // namespace nextvit
