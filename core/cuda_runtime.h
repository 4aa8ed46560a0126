#pragma once
// The few CUDA runtime services core/ needs (device memory, copies, fills), behind plain
// functions so that core/ compiles without the CUDA headers. core/cuda/ implements them; in a
// build without CUDA core/no_cuda.cpp implements them as functions that throw.
#include <cstddef>
#include <cstdint>

#include "core/allocator.h"

namespace nextvit::cuda_rt {

// The caching allocator's account (core/cuda/caching_allocator.h), in bytes.
struct DeviceMemoryStats {
  size_t allocated_bytes = 0;       // in blocks handed out
  size_t reserved_bytes = 0;        // in segments taken from the device (cudaMalloc)
  size_t peak_allocated_bytes = 0;  // highest allocated_bytes so far
  size_t peak_reserved_bytes = 0;
  size_t cached_bytes = 0;  // reserved - allocated: free for reuse
  // Older names, kept for callers: in_use = allocated, peak_in_use = peak_allocated.
  size_t in_use_bytes = 0;
  size_t peak_in_use_bytes = 0;
  int64_t cuda_malloc_calls = 0;
  int64_t cuda_free_calls = 0;
  int64_t segments = 0;
  int64_t splits = 0;  // blocks split off a larger free block
};

bool available();  // built with CUDA and a device is present

// Devices. Each host thread has a current device (cudaSetDevice; 0 until set), and the work it
// issues goes there: every device has its own stream, caching allocator, staging buffers and
// library handles, made at its first use. Ops set the device of their tensors for their
// duration (DeviceGuard, core/device_guard.h), so the thread's device matters only to code
// that calls these services directly.
constexpr int kMaxDevices = 16;  // devices past this many are not used
int device_count();              // 0 in a build without CUDA or without a device
int current_device();
void set_device(int device);  // throws unless 0 <= device < device_count()

Allocator* device_allocator();  // the current device's caching allocator
Allocator* device_allocator(int device);
// Host and device memory of the current device, in either direction: ordered on the current
// device's stream (a read to the host waits for it).
void copy_bytes(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);
// Between two devices (peer copy through unified addressing), ordered after the work queued so
// far on both devices' streams and before the work queued after it on either; no host wait.
void copy_between_devices(void* dst, int dst_device, const void* src, int src_device, size_t bytes);
void fill_f32(float* dst, float value, int64_t count);  // device memory
void memset_zero(void* dst, size_t bytes);              // device memory
// Strided gather into a contiguous destination, both on the device (for contiguous()).
void strided_copy(void* dst, const void* src, size_t elem_size, int ndim, const int64_t* shape,
                  const int64_t* src_strides, int64_t numel);
void synchronize();
// Timing events on the current stream (the profiler's CUDA clock).
void* event_create();
void event_destroy(void* event);
void event_record(void* event);
void event_synchronize(void* event);
float event_elapsed_ms(void* start, void* end);
// How many times nextvit has made the host wait for the device (reads from the device,
// synchronize(), NEXTVIT_CUDA_SYNC's waits, a full staging pool): training keeps this at zero
// except where it reads the loss (tests/test_host_sync.cpp). 0 in a build without CUDA.
int64_t host_synchronizations();
// The device allocator's statistics (all zero in a build without CUDA or before first use):
// the current device's, or those of `device`.
DeviceMemoryStats device_memory_stats();
DeviceMemoryStats device_memory_stats(int device);

}  // namespace nextvit::cuda_rt
