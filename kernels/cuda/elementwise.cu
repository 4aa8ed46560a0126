// Elementwise kernels on the GPU: grid-stride loops, one element per thread per iteration.
// All are memory-bound; they read and write each element once, coalesced.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/elementwise.h"

namespace nextvit::kernels::cuda {
namespace {

template <typename F>
__global__ void map_kernel(int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    f(i);
  }
}

template <typename F>
void launch_map(int64_t n, F f, const char* what) {
  if (n == 0) return;
  NV_LAUNCH(grid_size(n, 256), 256, 0, stream(), map_kernel<F>)(n, f);
  NV_CUDA_CHECK_LAUNCH("{} over {} elements", what, n);
}

}  // namespace

void add(int64_t n, const float* a, const float* b, float* out) {
  launch_map(
      n, [=] __device__(int64_t i) { out[i] = a[i] + b[i]; }, "add");
}

void mul(int64_t n, const float* a, const float* b, float* out) {
  launch_map(
      n, [=] __device__(int64_t i) { out[i] = a[i] * b[i]; }, "mul");
}

void scale(int64_t n, float s, const float* x, float* out) {
  launch_map(
      n, [=] __device__(int64_t i) { out[i] = s * x[i]; }, "scale");
}

void axpy(int64_t n, float alpha, const float* x, float* y) {
  launch_map(
      n, [=] __device__(int64_t i) { y[i] += alpha * x[i]; }, "axpy");
}

void relu_forward(int64_t n, const float* x, float* y) {
  launch_map(
      n, [=] __device__(int64_t i) { y[i] = fmaxf(x[i], 0.0f); }, "relu_forward");
}

void relu_backward(int64_t n, const float* y, const float* dy, float* dx) {
  launch_map(
      n, [=] __device__(int64_t i) { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; }, "relu_backward");
}

void sum(int64_t n, const float* x, float* out) {
  if (n == 0) {
    NV_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float), stream()), "sum of 0 floats");
    return;
  }
  deterministic_sum(
      n, [=] __device__(int64_t i) { return double(x[i]); }, false, out, "sum");
}

void fill_scaled(int64_t n, const float* s, float factor, float* out) {
  launch_map(
      n, [=] __device__(int64_t i) { out[i] = s[0] * factor; }, "fill_scaled");
}

}  // namespace nextvit::kernels::cuda
