#pragma once
// How every kernel of nextvit is launched and declares dynamic shared memory, in a form both
// compilers accept:
//
//   NV_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...);
//   NV_DYNAMIC_SHARED(float, smem);   // inside a kernel: extern __shared__ float smem[]
//
// Under nvcc they are exactly kernel<<<grid, block, shared_bytes, stream>>>(args...) and
// `extern __shared__ __align__(16) float smem[]`. In the emulated build (-DNEXTVIT_CUDA=EMULATE,
// core/cuda/emulator/) the same source is compiled by the host compiler: NV_LAUNCH hands the
// kernel, its arguments and the launch-site name to the emulator's scheduler, and
// NV_DYNAMIC_SHARED asks it for the running block's buffer. The kernel is the last argument so
// that a template's commas (apply_kernel<true, 4>) need no parentheses. It lives in core/ so
// that core/cuda's own kernels (fills, strided copies) use it too; kernels/cuda/launch.cuh
// includes it.
#include <cuda_runtime.h>

#ifdef NEXTVIT_CUDA_EMULATED
#define NV_LAUNCH(grid, block, shared_bytes, stream, ...) \
  ::nvemu::Launch(&__VA_ARGS__, #__VA_ARGS__, __FILE__, __LINE__, grid, block, shared_bytes, stream)
#define NV_DYNAMIC_SHARED(type, name) \
  type* const name = static_cast<type*>(::nvemu::dynamic_shared_memory())
#else
#define NV_LAUNCH(grid, block, shared_bytes, stream, ...) \
  __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#define NV_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif

#include <cstdint>

namespace nextvit::cuda_rt {

// A table in device memory that a kernel reads pointers from (the multi-tensor optimizer
// kernels: one argument for hundreds of tensors). Pass it by value: `data` is all the kernel
// uses; the tag and the size let the emulator's checkers (race check, bounds, guard bytes) find
// the allocations reached through the table as they find those of ordinary pointer arguments.
struct DeviceTable {
  uint64_t tag = 0x4e56454d55544142ull;  // "NVEMUTAB": core/cuda/emulator/memory.cpp
  const void* data = nullptr;
  uint64_t bytes = 0;
};

}  // namespace nextvit::cuda_rt
