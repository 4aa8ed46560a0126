#pragma once
// The stream every kernel of a device is launched on, one per device (the math libraries'
// handles bound to it: kernels/cuda/library_handles.h); current_stream() is the current
// device's. One stream per device keeps the semantics simple (ops are ordered as issued) while
// still letting the host run ahead of the GPU; host reads (Tensor::to(cpu)) synchronise it.
#include <cuda_runtime.h>

namespace nextvit::cuda_rt {

// Throws during a CUDA graph capture when the current device is not the capture's: the capture
// records only its device's stream, and another device's work would run now, not at replay.
cudaStream_t current_stream();
// The device of the running CUDA graph capture (core/cuda_graph.h), or -1.
int capture_device();
// Scratch memory for cuBLAS/cuDNN on the current device, grown on demand and reused (never
// freed while in use: all of the device's work is on its one stream).
void* workspace(size_t bytes);

}  // namespace nextvit::cuda_rt
