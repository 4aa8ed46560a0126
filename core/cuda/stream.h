#pragma once
// The stream every kernel of this process is launched on (the math libraries' handles bound to
// it: kernels/cuda/library_handles.h).
// One stream keeps the semantics simple (ops are ordered as issued) while still letting the
// host run ahead of the GPU; host reads (Tensor::to(cpu)) synchronise it.
#include <cuda_runtime.h>

namespace nextvit::cuda_rt {

cudaStream_t current_stream();
// Scratch memory for cuBLAS/cuDNN, grown on demand and reused (never freed while in use: all
// work is on one stream).
void* workspace(size_t bytes);

}  // namespace nextvit::cuda_rt
