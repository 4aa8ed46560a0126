#pragma once
// Properties of the current CUDA device that kernels size their grids by, read once.
namespace nextvit::kernels::cuda {

int multiprocessor_count();        // streaming multiprocessors (132 on an H100 SXM)
int max_shared_bytes_per_block();  // with the opt-in (cudaFuncAttributeMaxDynamicSharedMemorySize)

// The largest grid extent in y and z: 65535 on every CUDA GPU. Kernels whose y or z extent
// counts heads or images launch at most this many and loop over the rest (grid-stride), so no
// batch size is refused for the grid's sake. A test may lower it so that those loops run at
// small sizes (0 restores 65535).
int grid_yz_limit();
void set_grid_yz_limit_for_testing(int limit);

}  // namespace nextvit::kernels::cuda
