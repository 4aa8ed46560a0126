#pragma once
// A caching device allocator, after PyTorch's (caching_allocator.cpp explains the policy).
// cudaMalloc and cudaFree synchronise the device and cost tens of microseconds, and a training
// step allocates thousands of activations, so memory is taken from the device in segments,
// carved into blocks (size classes, best fit, splitting and merging), and kept for reuse. A
// block is reused on its own stream at once and on other streams only after events recorded at
// its free have completed. When cudaMalloc fails, the free segments are released and the
// allocation retried once; only then is "out of memory" reported, with the numbers.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/allocator.h"
#include "core/cuda_runtime.h"

namespace nextvit::cuda_rt {

// AllocatorStats is DeviceMemoryStats (core/cuda_runtime.h), which builds without CUDA see too.
using AllocatorStats = DeviceMemoryStats;

// One instance per device, made at its first use (the allocator of that device's tensors). The
// functions without a device act on the calling thread's current device.
Allocator* caching_allocator();
Allocator* caching_allocator(int device);
AllocatorStats allocator_stats();
AllocatorStats allocator_stats(int device);
void release_cached_memory();  // waits for the device, then cudaFree every free segment
// `ptr` (an allocated block) is used by work on `stream` as well as on its own: its free then
// waits for that work (an event) before the block is reused.
void record_stream(void* ptr, cudaStream_t stream);
// Segments shared by several blocks (true: the default on a GPU) or one cudaMalloc per block
// (false: NEXTVIT_CUDA_ALLOC=exact, the emulated build's default). For tests.
void set_segment_splitting(bool split);
// CUDA graph capture (core/cuda_graph.h). Between begin and end, allocations come from a new
// private pool (fresh segments, cudaMalloc'd in relaxed capture mode as PyTorch does) and blocks
// freed during the capture stay out of circulation; release gives the pool's blocks and the held
// ones back to the ordinary cache once the graph is gone. Returns the pool's id (> 0).
int begin_capture_pool();
void end_capture_pool();
void release_capture_pool(int pool);

}  // namespace nextvit::cuda_rt
