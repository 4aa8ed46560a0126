#pragma once
// A caching device allocator. cudaMalloc and cudaFree synchronise the device and cost tens of
// microseconds, and a training step allocates thousands of activations of the same few sizes,
// so freed blocks are kept in per-size free lists and handed out again. Sizes are rounded up
// (512 B granules below 1 MiB, 2 MiB granules above) so that nearby sizes share blocks. When
// cudaMalloc fails, the cache is released and the allocation retried once; only then is
// "out of memory" reported, with the numbers that explain it.
#include <cstddef>
#include <cstdint>

#include "core/allocator.h"

namespace nextvit::cuda_rt {

struct AllocatorStats {
  size_t in_use_bytes = 0;  // handed out and not yet returned
  size_t cached_bytes = 0;  // returned and kept for reuse
  size_t peak_in_use_bytes = 0;
  int64_t cuda_malloc_calls = 0;
};

// The process-wide instance (the allocator registered for CUDA tensors).
Allocator* caching_allocator();
AllocatorStats allocator_stats();
void release_cached_memory();  // cudaFree every cached block

}  // namespace nextvit::cuda_rt
