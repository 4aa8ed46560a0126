#pragma once
// The few CUDA runtime services core/ needs (device memory, copies, fills), behind plain
// functions so that core/ compiles without the CUDA headers. core/cuda/ implements them; in a
// build without CUDA core/no_cuda.cpp implements them as functions that throw.
#include <cstddef>
#include <cstdint>

#include "core/allocator.h"

namespace nextvit::cuda_rt {

bool available();               // built with CUDA and a device is present
Allocator* device_allocator();  // the caching device allocator
void copy_bytes(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);
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

}  // namespace nextvit::cuda_rt
