#pragma once
// What a Next-ViT will need in memory, estimated from its configuration alone, before a single
// tensor is allocated, so that an impossible request (a width of 2^20, --img 100000 with batch
// 128) is refused with its numbers instead of ending in std::bad_alloc or the OOM killer after
// minutes of work.
//
// The estimate is deliberately a lower bound: it counts the weights of convolutions and linear
// layers, and per block only four activations of the block's output size (the real training
// footprint is several times more). A request refused by it cannot fit; one accepted may still
// be too big, which the allocator then reports.
#include <cstdint>
#include <string>

#include "models/nextvit_config.h"

namespace nextvit {

struct MemoryEstimate {
  double parameters = 0;        // weights of convolutions and linear layers
  double parameter_bytes = 0;   // f32; x4 in training (weights, gradients, two AdamW moments)
  double activation_bytes = 0;  // for the batch and image size asked for
  double total_bytes() const { return parameter_bytes + activation_bytes; }
};

// batch = 0 counts the parameters alone.
MemoryEstimate estimate_memory(const NextViTConfig& config, int64_t batch, int64_t height,
                               int64_t width, bool training);

// Throws, naming `what` (e.g. "train"), the estimate and the machine's memory, when the estimate
// exceeds the physical memory.
void check_memory_fits(const NextViTConfig& config, int64_t batch, int64_t height, int64_t width,
                       bool training, const std::string& what);

}  // namespace nextvit
