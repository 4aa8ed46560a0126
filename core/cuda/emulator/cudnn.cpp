// cuDNN convolutions under the emulator. Descriptors are checked as cuDNN checks them (sizes
// positive, NCHW float, the filter's channels times the group count equal to the input's, the
// output descriptor equal to what the convolution produces: CUDNN_STATUS_BAD_PARAM otherwise).
// The v7 algorithm queries return a fixed list per direction, with the workspace each
// algorithm needs, its determinism as cuDNN documents it (backward-data ALGO_0 and
// backward-filter ALGO_0 and ALGO_3 accumulate with atomics) and the descriptor's math type. A
// call with less workspace than its algorithm needs fails with CUDNN_STATUS_BAD_PARAM, as in
// cuDNN. The convolutions themselves are reference loops in double with alpha/beta blending
// (beta = 0: the output is not read).
#include <cudnn.h>

#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/cuda/emulator/state.h"

struct cudnnContext {
  int device = 0;  // current at cudnnCreate: the handle works on this device's memory only
  cudaStream_t stream = nullptr;
};
struct cudnnTensorStruct {
  bool set = false;
  int n = 0, c = 0, h = 0, w = 0;
};
struct cudnnFilterStruct {
  bool set = false;
  int k = 0, c = 0, h = 0, w = 0;
};
struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  int groups = 1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace nvemu {
namespace {

// The shapes of one convolution, once its descriptors are known to agree.
struct Conv {
  int N, C, H, W;   // input
  int K, Cg, R, S;  // filter: K outputs, Cg = C / groups inputs each
  int P, Q;         // output height, width
  int groups;
  const cudnnConvolutionStruct* d;
};

bool output_dims(const cudnnConvolutionStruct& d, const cudnnTensorStruct& x,
                 const cudnnFilterStruct& w, int* p, int* q) {
  const int eff_r = (w.h - 1) * d.dil_h + 1, eff_s = (w.w - 1) * d.dil_w + 1;
  *p = (x.h + 2 * d.pad_h - eff_r) / d.stride_h + 1;
  *q = (x.w + 2 * d.pad_w - eff_s) / d.stride_w + 1;
  return x.h + 2 * d.pad_h >= eff_r && x.w + 2 * d.pad_w >= eff_s;
}

cudnnStatus_t make_conv(cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t x,
                        cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y, Conv* out) {
  if (!conv || !x || !w || !y) return CUDNN_STATUS_BAD_PARAM;
  if (!conv->set || !x->set || !w->set || !y->set) return CUDNN_STATUS_BAD_PARAM;
  int p = 0, q = 0;
  if (!output_dims(*conv, *x, *w, &p, &q)) return CUDNN_STATUS_BAD_PARAM;
  if (x->c != w->c * conv->groups || w->k % conv->groups != 0) return CUDNN_STATUS_BAD_PARAM;
  if (y->n != x->n || y->c != w->k || y->h != p || y->w != q) return CUDNN_STATUS_BAD_PARAM;
  *out = Conv{x->n, x->c, x->h, x->w, w->k, w->c, w->h, w->w, p, q, conv->groups, conv};
  return CUDNN_STATUS_SUCCESS;
}

size_t elems_x(const Conv& c) {
  return size_t(c.N) * c.C * c.H * c.W;
}
size_t elems_w(const Conv& c) {
  return size_t(c.K) * c.Cg * c.R * c.S;
}
size_t elems_y(const Conv& c) {
  return size_t(c.N) * c.K * c.P * c.Q;
}
// What im2col of one image takes: the workspace of the GEMM-based algorithms.
size_t im2col_bytes(const Conv& c) {
  return sizeof(float) * size_t(c.Cg) * c.R * c.S * c.P * c.Q * c.groups;
}

bool on_device(const void* p, size_t elems, const char* call, const char* what, int device) {
  if (elems == 0) return true;
  const Allocation* a = find_allocation(p, elems * sizeof(float));
  if (a == nullptr) {
    fault(cudaErrorIllegalAddress, std::string(call) + ": " + what + " (" + std::to_string(elems) +
                                       " floats) is not inside one device allocation");
    return false;
  }
  if (std::string bad = foreign_memory({a}, device); !bad.empty()) {
    fault(cudaErrorIllegalAddress, std::string(call) + ": " + what + " (a handle of device " +
                                       std::to_string(device) + ", made by cudnnCreate there) " +
                                       bad);
    return false;
  }
  return true;
}

// Visits every (n, k, p, q, ci, r, s) term of the convolution: f(x index, w index, y index).
template <typename F>
void for_each_term(const Conv& c, const F& f) {
  const cudnnConvolutionStruct& d = *c.d;
  const int k_per_group = c.K / c.groups;
  for (int n = 0; n < c.N; ++n)
    for (int k = 0; k < c.K; ++k) {
      const int g = k / k_per_group;
      for (int p = 0; p < c.P; ++p)
        for (int q = 0; q < c.Q; ++q) {
          const size_t yi = ((size_t(n) * c.K + k) * c.P + p) * c.Q + q;
          for (int ci = 0; ci < c.Cg; ++ci)
            for (int r = 0; r < c.R; ++r) {
              const int ih = p * d.stride_h - d.pad_h + r * d.dil_h;
              if (ih < 0 || ih >= c.H) continue;
              for (int s = 0; s < c.S; ++s) {
                const int iw = q * d.stride_w - d.pad_w + s * d.dil_w;
                if (iw < 0 || iw >= c.W) continue;
                // CUDNN_CONVOLUTION flips the filter; cross-correlation (what DL calls a
                // convolution) does not.
                const int fr = d.mode == CUDNN_CONVOLUTION ? c.R - 1 - r : r;
                const int fs = d.mode == CUDNN_CONVOLUTION ? c.S - 1 - s : s;
                const size_t xi = ((size_t(n) * c.C + size_t(g) * c.Cg + ci) * c.H + ih) * c.W + iw;
                const size_t wi = ((size_t(k) * c.Cg + ci) * c.R + fr) * c.S + fs;
                f(xi, wi, yi);
              }
            }
        }
    }
}

void blend(float* out, const std::vector<double>& acc, float alpha, float beta) {
  for (size_t i = 0; i < acc.size(); ++i) {
    const double v = double(alpha) * acc[i];
    out[i] = beta == 0.0f ? float(v) : float(v + double(beta) * out[i]);
  }
}

cudnnStatus_t check_call(cudnnHandle_t h, const void* alpha, const void* beta, void* workspace,
                         size_t have, size_t need) {
  if (h == nullptr) return CUDNN_STATUS_NOT_INITIALIZED;
  if (alpha == nullptr || beta == nullptr) return CUDNN_STATUS_BAD_PARAM;
  if (have < need || (need > 0 && workspace == nullptr)) return CUDNN_STATUS_BAD_PARAM;
  if (need > 0 && find_allocation(workspace, need) == nullptr) return CUDNN_STATUS_BAD_PARAM;
  if (sticky_error() != cudaSuccess || !valid_stream(h->stream)) {
    return CUDNN_STATUS_EXECUTION_FAILED;
  }
  return CUDNN_STATUS_SUCCESS;
}

size_t fwd_bytes(const Conv& c, int algo) {
  switch (algo) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM:
      return 0;
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM:
      return sizeof(int) * size_t(c.Cg) * c.R * c.S;
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM:
      return im2col_bytes(c);
    default:
      return 0;
  }
}
size_t bwd_data_bytes(const Conv& c, int algo) {
  return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 ? im2col_bytes(c) : 0;
}
size_t bwd_filter_bytes(const Conv& c, int algo) {
  return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 || algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3
             ? im2col_bytes(c)
             : 0;
}

template <typename Perf, typename Algo>
void fill(Perf* perf, int requested, int* returned, const Conv& c,
          const std::vector<std::pair<int, cudnnDeterminism_t>>& list,
          size_t (*bytes)(const Conv&, int)) {
  int n = 0;
  for (const auto& [algo, det] : list) {
    if (n == requested) break;
    Perf p{};
    p.algo = Algo(algo);
    p.status = CUDNN_STATUS_SUCCESS;
    p.time = -1.0f;  // heuristics do not run anything
    p.memory = bytes(c, algo);
    p.determinism = det;
    p.mathType = c.d->math;
    perf[n++] = p;
  }
  *returned = n;
}

struct Operand {
  const char* name;
  const void* p;
  size_t elems;
};

// The three convolution calls: check the call and the operands, accumulate every term with
// `add` (acc, x index, w index, y index) into an accumulator of `out_elems`, and blend it into
// `out`. Returns the status cuDNN would.
template <typename Add>
cudnnStatus_t run(const char* call, cudnnHandle_t h, const void* alpha, const void* beta,
                  void* workspace, size_t have, size_t need, const Conv& c,
                  std::initializer_list<Operand> operands, size_t out_elems, void* out, Add add) {
  if (cudnnStatus_t s = check_call(h, alpha, beta, workspace, have, need)) return s;
  for (const Operand& o : operands) {
    if (!on_device(o.p, o.elems, call, o.name, h->device)) return CUDNN_STATUS_EXECUTION_FAILED;
  }
  // Now, or at each launch of the graph when the handle's stream is capturing: the closure
  // holds its own copy of the convolution's descriptor (the caller may destroy it) and of the
  // host scalars alpha and beta (read at the call, as cuDNN does).
  auto desc = std::make_shared<cudnnConvolutionStruct>(*c.d);
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const cudaError_t e = enqueue(h->stream, call, [=] {
    Conv kept = c;
    kept.d = desc.get();
    std::vector<double> acc(out_elems, 0.0);
    for_each_term(kept, [&](size_t xi, size_t wi, size_t yi) { add(acc, xi, wi, yi); });
    blend(static_cast<float*>(out), acc, a, b);
  });
  return e == cudaSuccess ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_EXECUTION_FAILED;
}

}  // namespace
}  // namespace nvemu

using nvemu::Conv;

size_t cudnnGetVersion() {
  return CUDNN_VERSION;
}

const char* cudnnGetErrorString(cudnnStatus_t s) {
  switch (s) {
    case CUDNN_STATUS_SUCCESS:
      return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED:
      return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM:
      return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER:
      return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_NOT_SUPPORTED:
      return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_INTERNAL_ERROR:
      return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED:
      return "CUDNN_STATUS_EXECUTION_FAILED";
  }
  return "CUDNN_STATUS_UNKNOWN";
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  *handle = new cudnnContext();
  (*handle)->device = nvemu::current_device();
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUDNN_STATUS_NOT_INITIALIZED;
  if (!nvemu::valid_stream(stream)) return CUDNN_STATUS_BAD_PARAM;
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d) {
  if (d == nullptr) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  *d = new cudnnTensorStruct();
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                         cudnnDataType_t type, int n, int c, int h, int w) {
  if (d == nullptr) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (format != CUDNN_TENSOR_NCHW || type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  *d = cudnnTensorStruct{true, n, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d) {
  if (d == nullptr) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  *d = new cudnnFilterStruct();
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t type,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  if (d == nullptr) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  if (k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (format != CUDNN_TENSOR_NCHW || type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  *d = cudnnFilterStruct{true, k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d) {
  if (d == nullptr) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  *d = new cudnnConvolutionStruct();
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w,
                                              int stride_h, int stride_w, int dil_h, int dil_w,
                                              cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute_type) {
  if (d == nullptr) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  if (pad_h < 0 || pad_w < 0 || stride_h <= 0 || stride_w <= 0 || dil_h <= 0 || dil_w <= 0) {
    return CUDNN_STATUS_BAD_PARAM;
  }
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) return CUDNN_STATUS_BAD_PARAM;
  if (compute_type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  d->set = true;
  d->pad_h = pad_h;
  d->pad_w = pad_w;
  d->stride_h = stride_h;
  d->stride_w = stride_w;
  d->dil_h = dil_h;
  d->dil_w = dil_w;
  d->mode = mode;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups) {
  if (d == nullptr) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  if (groups < 1) return CUDNN_STATUS_BAD_PARAM;
  d->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
  if (d == nullptr) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
  if (int(m) < 0 || int(m) > int(CUDNN_FMA_MATH)) return CUDNN_STATUS_BAD_PARAM;
  d->math = m;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(cudnnConvolutionDescriptor_t conv,
                                                    cudnnTensorDescriptor_t x,
                                                    cudnnFilterDescriptor_t w, int* n, int* c,
                                                    int* h, int* wd) {
  if (!conv || !x || !w || !n || !c || !h || !wd) return CUDNN_STATUS_BAD_PARAM;
  if (!conv->set || !x->set || !w->set || x->c != w->c * conv->groups)
    return CUDNN_STATUS_BAD_PARAM;
  if (!nvemu::output_dims(*conv, *x, *w, h, wd)) return CUDNN_STATUS_BAD_PARAM;
  *n = x->n;
  *c = w->k;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t handle, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
    cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t y, int requested, int* returned,
    cudnnConvolutionFwdAlgoPerf_t* perf) {
  if (handle == nullptr) return CUDNN_STATUS_NOT_INITIALIZED;
  if (returned == nullptr || perf == nullptr || requested <= 0) return CUDNN_STATUS_BAD_PARAM;
  Conv c;
  if (cudnnStatus_t s = nvemu::make_conv(conv, x, w, y, &c)) return s;
  nvemu::fill<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      perf, requested, returned, c,
      {{CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_DETERMINISTIC},
       {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_DETERMINISTIC},
       {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_DETERMINISTIC}},
      &nvemu::fwd_bytes);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t dx, int requested, int* returned,
    cudnnConvolutionBwdDataAlgoPerf_t* perf) {
  if (handle == nullptr) return CUDNN_STATUS_NOT_INITIALIZED;
  if (returned == nullptr || perf == nullptr || requested <= 0) return CUDNN_STATUS_BAD_PARAM;
  Conv c;
  if (cudnnStatus_t s = nvemu::make_conv(conv, dx, w, dy, &c)) return s;
  nvemu::fill<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      perf, requested, returned, c,
      {{CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_DETERMINISTIC},
       {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, CUDNN_NON_DETERMINISTIC}},
      &nvemu::bwd_data_bytes);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t conv, cudnnFilterDescriptor_t dw, int requested, int* returned,
    cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
  if (handle == nullptr) return CUDNN_STATUS_NOT_INITIALIZED;
  if (returned == nullptr || perf == nullptr || requested <= 0) return CUDNN_STATUS_BAD_PARAM;
  Conv c;
  if (cudnnStatus_t s = nvemu::make_conv(conv, x, dw, dy, &c)) return s;
  // ALGO_0 first, as cuDNN's heuristics often rank it for small filters: a caller that wants
  // determinism must look at the determinism field.
  nvemu::fill<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      perf, requested, returned, c,
      {{CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, CUDNN_NON_DETERMINISTIC},
       {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_DETERMINISTIC},
       {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, CUDNN_NON_DETERMINISTIC}},
      &nvemu::bwd_filter_bytes);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha,
                                      cudnnTensorDescriptor_t x_desc, const void* x,
                                      cudnnFilterDescriptor_t w_desc, const void* w,
                                      cudnnConvolutionDescriptor_t conv,
                                      cudnnConvolutionFwdAlgo_t algo, void* workspace,
                                      size_t workspace_bytes, const void* beta,
                                      cudnnTensorDescriptor_t y_desc, void* y) {
  std::lock_guard<std::recursive_mutex> lock(nvemu::device_mutex());
  Conv c;
  if (cudnnStatus_t s = nvemu::make_conv(conv, x_desc, w_desc, y_desc, &c)) return s;
  if (algo < 0 || algo >= CUDNN_CONVOLUTION_FWD_ALGO_COUNT) return CUDNN_STATUS_BAD_PARAM;
  const float* xf = static_cast<const float*>(x);
  const float* wf = static_cast<const float*>(w);
  return nvemu::run(
      "cudnnConvolutionForward", handle, alpha, beta, workspace, workspace_bytes,
      nvemu::fwd_bytes(c, algo), c,
      {{"x", x, nvemu::elems_x(c)}, {"w", w, nvemu::elems_w(c)}, {"y", y, nvemu::elems_y(c)}},
      nvemu::elems_y(c), y, [=](std::vector<double>& acc, size_t xi, size_t wi, size_t yi) {
        acc[yi] += double(xf[xi]) * wf[wi];
      });
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha,
                                           cudnnFilterDescriptor_t w_desc, const void* w,
                                           cudnnTensorDescriptor_t dy_desc, const void* dy,
                                           cudnnConvolutionDescriptor_t conv,
                                           cudnnConvolutionBwdDataAlgo_t algo, void* workspace,
                                           size_t workspace_bytes, const void* beta,
                                           cudnnTensorDescriptor_t dx_desc, void* dx) {
  std::lock_guard<std::recursive_mutex> lock(nvemu::device_mutex());
  Conv c;
  if (cudnnStatus_t s = nvemu::make_conv(conv, dx_desc, w_desc, dy_desc, &c)) return s;
  if (algo < 0 || algo >= CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT) return CUDNN_STATUS_BAD_PARAM;
  const float* wf = static_cast<const float*>(w);
  const float* dyf = static_cast<const float*>(dy);
  return nvemu::run(
      "cudnnConvolutionBackwardData", handle, alpha, beta, workspace, workspace_bytes,
      nvemu::bwd_data_bytes(c, algo), c,
      {{"dx", dx, nvemu::elems_x(c)}, {"w", w, nvemu::elems_w(c)}, {"dy", dy, nvemu::elems_y(c)}},
      nvemu::elems_x(c), dx, [=](std::vector<double>& acc, size_t xi, size_t wi, size_t yi) {
        acc[xi] += double(dyf[yi]) * wf[wi];
      });
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                             cudnnTensorDescriptor_t x_desc, const void* x,
                                             cudnnTensorDescriptor_t dy_desc, const void* dy,
                                             cudnnConvolutionDescriptor_t conv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* workspace,
                                             size_t workspace_bytes, const void* beta,
                                             cudnnFilterDescriptor_t dw_desc, void* dw) {
  std::lock_guard<std::recursive_mutex> lock(nvemu::device_mutex());
  Conv c;
  if (cudnnStatus_t s = nvemu::make_conv(conv, x_desc, dw_desc, dy_desc, &c)) return s;
  if (algo < 0 || algo >= CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT) return CUDNN_STATUS_BAD_PARAM;
  const float* xf = static_cast<const float*>(x);
  const float* dyf = static_cast<const float*>(dy);
  return nvemu::run(
      "cudnnConvolutionBackwardFilter", handle, alpha, beta, workspace, workspace_bytes,
      nvemu::bwd_filter_bytes(c, algo), c,
      {{"x", x, nvemu::elems_x(c)}, {"dw", dw, nvemu::elems_w(c)}, {"dy", dy, nvemu::elems_y(c)}},
      nvemu::elems_w(c), dw, [=](std::vector<double>& acc, size_t xi, size_t wi, size_t yi) {
        acc[wi] += double(dyf[yi]) * xf[xi];
      });
}
