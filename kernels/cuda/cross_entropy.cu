// Cross-entropy with label smoothing on the GPU (kernels/cross_entropy.h).
//
// Forward, two kernels: one block per row reduces the row's maximum, then sum(exp(x - max)) and
// sum(x) (each thread in double, then the block), and writes the row's log-sum-exp and loss;
// a single block then adds the rows' losses in row order, in double, for the mean. No atomics,
// so the loss is the same from run to run. Backward: one thread per logit,
// dlogits = grad / N * (softmax - q), with grad_loss read on the device (no host sync).
//
// Targets are checked here, not on the host (that would read them back every step): a target
// outside [0, K) gives its row a NaN loss, reads no logit, and is recorded in the device error
// record (core/cuda/device_errors.h), which the host reports at its next read from the device.
#include "core/cuda/device_errors.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda/launch.cuh"

namespace nextvit::kernels::cuda {
namespace {

constexpr int kBlock = 256;

// Block-wide reductions of doubles and a float maximum (blockDim.x == kBlock).
__device__ double block_sum_double(double v) {
  __shared__ double partial[kBlock / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // partial may still be read by a previous call
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  double total = 0.0;
#pragma unroll
  for (int w = 0; w < kBlock / 32; ++w) total += partial[w];
  return total;
}

__device__ float block_max(float v) {
  __shared__ float partial[kBlock / 32];
  v = warp_max(v);
  __syncthreads();
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float m = partial[0];
#pragma unroll
  for (int w = 1; w < kBlock / 32; ++w) m = fmaxf(m, partial[w]);
  return m;
}

__global__ void __launch_bounds__(kBlock)
    row_loss_kernel(int64_t n, int64_t k, const float* __restrict__ logits,
                    const int64_t* __restrict__ targets, float smoothing, float* __restrict__ lse,
                    double* __restrict__ row_loss, cuda_rt::DeviceIndexError* error) {
  const int64_t r = blockIdx.x;
  const float* xr = logits + r * k;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < k; j += kBlock) mx = fmaxf(mx, xr[j]);
  mx = block_max(mx);
  double sum_exp = 0.0, sum_x = 0.0;
  for (int64_t j = threadIdx.x; j < k; j += kBlock) {
    sum_exp += exp(double(xr[j] - mx));
    sum_x += xr[j];
  }
  sum_exp = block_sum_double(sum_exp);
  sum_x = block_sum_double(sum_x);
  if (threadIdx.x == 0) {
    const double row_lse = double(mx) + log(sum_exp), s = smoothing;
    lse[r] = static_cast<float>(row_lse);
    const int64_t t = targets[r];
    if (t < 0 || t >= k) {
      // The same values from every bad row, and the smallest key wins: deterministic.
      atomicMin(&error->first, cuda_rt::device_error_key(r, t));
      error->rows = n;
      error->limit = k;
      error->op = cuda_rt::kDeviceErrorCrossEntropyTarget;
      row_loss[r] = NAN;
    } else {
      row_loss[r] = row_lse - (1.0 - s) * double(xr[t]) - s / double(k) * sum_x;
    }
  }
}

// One block: thread t adds rows t, t + kBlock, ... in order, then the block adds the threads'.
__global__ void __launch_bounds__(kBlock)
    mean_kernel(int64_t n, const double* __restrict__ row_loss, float* __restrict__ loss) {
  double s = 0.0;
  for (int64_t r = threadIdx.x; r < n; r += kBlock) s += row_loss[r];
  s = block_sum_double(s);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(s / double(n));
}

// Derivation: docs/derivations.md#label-smoothed-cross-entropy-backward
__global__ void backward_kernel(int64_t n, int64_t k, const float* __restrict__ logits,
                                const int64_t* __restrict__ targets, const float* __restrict__ lse,
                                float smoothing, const float* __restrict__ grad_loss,
                                float* __restrict__ dlogits) {
  const float g = grad_loss[0] / static_cast<float>(n);
  const float off_target = smoothing / static_cast<float>(k);
  const float on_target = 1.0f - smoothing + off_target;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * k;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / k, j = e % k;
    const float q = j == targets[r] ? on_target : off_target;
    dlogits[e] = g * (expf(logits[e] - lse[r]) - q);
  }
}

}  // namespace

void cross_entropy_forward(int64_t n, int64_t k, const float* logits, const int64_t* targets,
                           float smoothing, float* loss, float* lse) {
  NV_CHECK(n > 0 && n <= 0x7fffffff, "cross_entropy forward: {} rows (1 to 2^31 - 1 supported)", n);
  double* row_loss = static_cast<double*>(cuda_rt::workspace(size_t(n) * sizeof(double)));
  NV_LAUNCH(unsigned(n), kBlock, 0, stream(), row_loss_kernel)
  (n, k, logits, targets, smoothing, lse, row_loss, cuda_rt::device_index_error());
  NV_CUDA_CHECK_LAUNCH("cross_entropy forward of ({}, {})", n, k);
  NV_LAUNCH(1, kBlock, 0, stream(), mean_kernel)(n, row_loss, loss);
  NV_CUDA_CHECK_LAUNCH("cross_entropy mean over {} rows", n);
}

void cross_entropy_backward(int64_t n, int64_t k, const float* logits, const int64_t* targets,
                            const float* lse, float smoothing, const float* grad_loss,
                            float* dlogits) {
  if (n == 0 || k == 0) return;
  NV_LAUNCH(grid_size(n * k, 256), 256, 0, stream(), backward_kernel)
  (n, k, logits, targets, lse, smoothing, grad_loss, dlogits);
  NV_CUDA_CHECK_LAUNCH("cross_entropy backward of ({}, {})", n, k);
}

}  // namespace nextvit::kernels::cuda
