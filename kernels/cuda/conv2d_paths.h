#pragma once
// The CUDA convolution's implementations, one per kind of convolution, behind the dispatcher
// kernels::cuda::conv2d_* (kernels/cuda/conv2d.cu). Declared here, in plain C++, so that tests
// and benchmarks can run one path directly (the hand-written grouped kernel against cuDNN on the
// same shape, say). All take device pointers, run on cuda_rt::current_stream() and overwrite
// their outputs; shapes follow kernels/conv2d.h. Scratch memory comes from cuda_rt::workspace.
//
//   grouped3x3_*   hand-written direct kernels (grouped_conv3x3.cu): 3x3, stride 1, padding 1,
//                  in/groups == out/groups in {16, 32}: MHCA's grouped convolution
//   pointwise_*    1x1, stride 1, no padding: per-image matrix products through cuBLAS
//                  (conv2d_pointwise.cu)
//   cudnn_*        anything, through cuDNN (conv2d_cudnn.cu; only with NEXTVIT_WITH_CUDNN)
//   direct_*       anything, one thread per output element (conv2d_direct.cu): the fallback
//                  without cuDNN, and a simple reference for the tests
//
// None of them adds a bias; the dispatcher adds it (add_channel_bias) and computes its
// gradient (channel_sum).
#include <cstdint>

#include "kernels/conv2d.h"

namespace nextvit::kernels::cuda::conv_paths {

bool grouped3x3_supported(const Conv2dShape& s);
void grouped3x3_forward(const Conv2dShape& s, const float* x, const float* w, float* y);
void grouped3x3_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx);
void grouped3x3_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw);

void pointwise_forward(const Conv2dShape& s, const float* x, const float* w, float* y);
void pointwise_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx);
void pointwise_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw);

// True when this build has cuDNN; the cudnn_* functions throw otherwise.
bool cudnn_built();
void cudnn_forward(const Conv2dShape& s, const float* x, const float* w, float* y);
void cudnn_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx);
void cudnn_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw);

void direct_forward(const Conv2dShape& s, const float* x, const float* w, float* y);
void direct_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx);
void direct_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw);

// y[n, c, p] += b[c] for y (N, C, P);  db[c] = sum over n, p of dy[n, c, p].
void add_channel_bias(int64_t N, int64_t C, int64_t P, const float* b, float* y);
void channel_sum(int64_t N, int64_t C, int64_t P, const float* dy, float* db);

}  // namespace nextvit::kernels::cuda::conv_paths
