#pragma once
// How many CPU threads the kernels use (OpenMP underneath; the only place outside kernels/cpu
// that knows it). Programs set it once from --threads; 0 keeps OpenMP's default
// (OMP_NUM_THREADS, else one per core).
namespace nextvit {

void set_num_threads(int threads);
int num_threads();

}  // namespace nextvit
