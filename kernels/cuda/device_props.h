#pragma once
// Properties of the current CUDA device that kernels size their grids by, read once.
namespace nextvit::kernels::cuda {

int multiprocessor_count();        // streaming multiprocessors (132 on an H100 SXM)
int max_shared_bytes_per_block();  // with the opt-in (cudaFuncAttributeMaxDynamicSharedMemorySize)

}  // namespace nextvit::kernels::cuda
