// CPU elementwise kernels: simple loops the compiler vectorises (AVX2/AVX-512), split across
// OpenMP threads only when there is enough work to pay for waking them.
#include "kernels/elementwise.h"

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/relu_mask.h"

namespace nextvit::kernels::cpu {

void add(int64_t n, const float* a, const float* b, float* out) {
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = a[i] + b[i];
  });
}

void mul(int64_t n, const float* a, const float* b, float* out) {
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = a[i] * b[i];
  });
}

void scale(int64_t n, float s, const float* x, float* out) {
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = s * x[i];
  });
}

void axpy(int64_t n, float alpha, const float* x, float* y) {
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) y[i] += alpha * x[i];
  });
}

void relu_forward(int64_t n, const float* x, float* y) {
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
  });
}

void relu_backward(int64_t n, const float* y, const float* dy, float* dx) {
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) dx[i] = relu_mask(dy[i], y[i]);
  });
}

void sum(int64_t n, const float* x, float* out) {
  out[0] = static_cast<float>(parallel_sum(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    double acc = 0.0;
    for (int64_t i = lo; i < hi; ++i) acc += x[i];
    return acc;
  }));
}

void fill_scaled(int64_t n, const float* s, float factor, float* out) {
  const float v = s[0] * factor;
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = v;
  });
}

}  // namespace nextvit::kernels::cpu
