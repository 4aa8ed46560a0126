#pragma once
// Allocators: where storage bytes come from. The CPU allocator hands out 64-byte aligned blocks
// (one cache line, one AVX-512 register) so kernels may use aligned vector loads at a tensor's
// start. The CUDA backend registers a caching allocator for device memory (core/cuda/), so
// that no op calls cudaMalloc on the hot path.
#include <cstddef>

#include "core/device.h"

namespace nextvit {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  virtual const char* name() const = 0;
};

// The allocator that serves a device (throws for CUDA in a build without it).
Allocator* allocator_for(Device device);

// Replaces the allocator for a device type; returns the previous one. Used by the CUDA backend
// at start-up and by tests that count allocations.
Allocator* set_allocator(DeviceType type, Allocator* allocator);

// The machine's physical memory in bytes (0 when unknown): the CPU allocator refuses any
// single request above it, and memory estimates are compared against it.
size_t physical_memory_bytes();

}  // namespace nextvit
