// Convolutions through cuDNN, for the shapes no hand-written or GEMM path covers (the stem's
// dense 3x3 convolutions). A Plan per distinct Conv2dShape holds the tensor, filter and
// convolution descriptors and, chosen on first use of each pass, the algorithm and the scratch
// it needs; later calls of that shape go straight to cudnnConvolution*. Algorithms come from
// cuDNN's heuristics (the *_v7 queries: no trial runs, so the first call is cheap and the
// choice reproducible), restricted to deterministic algorithms with plain FMA math: no TF32, so
// results agree with the CPU to fp32 rounding, as the cuBLAS handle does (library_handles.h),
// and have the same bits on every run. Scratch comes from cuda_rt::workspace.
#include "kernels/cuda/conv2d_paths.h"
#include "kernels/cuda/launch.cuh"

#ifdef NEXTVIT_WITH_CUDNN
#include <array>
#include <map>
#include <memory>
#include <mutex>

#include "kernels/cuda/library_handles.h"
#endif

namespace nextvit::kernels::cuda::conv_paths {

#ifdef NEXTVIT_WITH_CUDNN
namespace {

// Algorithms needing more scratch than this are passed over for the next one.
constexpr size_t kMaxWorkspaceBytes = size_t(1) << 30;

// The algorithm of one pass (forward, backward-data or backward-filter), chosen on first use.
struct Choice {
  bool chosen = false;
  int algo = 0;
  size_t bytes = 0;  // its workspace
  cudnnMathType_t math = CUDNN_FMA_MATH;
};

// Owns its descriptors (destroyed with the plan cache at exit).
struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  Choice fwd, bwd_data, bwd_filter;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

std::string describe(const Conv2dShape& s) {
  return fmt::format(
      "conv2d (cuDNN) input ({}, {}, {}, {}), weight ({}, {}, {}, {}), stride "
      "({}, {}), padding ({}, {}), {} groups",
      s.batch, s.in_channels, s.in_h, s.in_w, s.out_channels, s.in_channels / s.groups, s.kernel_h,
      s.kernel_w, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.groups);
}

int to_int(int64_t v, const Conv2dShape& s) {
  NV_CHECK(v <= 0x7fffffff, "{}: size {} exceeds cuDNN's int dimensions", describe(s), v);
  return static_cast<int>(v);
}

std::unique_ptr<Plan> make_plan(const Conv2dShape& s) {
  auto plan = std::make_unique<Plan>();
  Plan& p = *plan;
  const std::string what = describe(s);
  NV_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.x), "{}", what);
  NV_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.y), "{}", what);
  NV_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w), "{}", what);
  NV_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv), "{}", what);
  NV_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(p.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, to_int(s.batch, s),
                                 to_int(s.in_channels, s), to_int(s.in_h, s), to_int(s.in_w, s)),
      "{}", what);
  NV_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                            to_int(s.batch, s), to_int(s.out_channels, s),
                                            to_int(s.out_h(), s), to_int(s.out_w(), s)),
                 "{}", what);
  NV_CUDNN_CHECK(
      cudnnSetFilter4dDescriptor(p.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                 to_int(s.out_channels, s), to_int(s.in_channels / s.groups, s),
                                 to_int(s.kernel_h, s), to_int(s.kernel_w, s)),
      "{}", what);
  NV_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p.conv, to_int(s.pad_h, s), to_int(s.pad_w, s),
                                                 to_int(s.stride_h, s), to_int(s.stride_w, s), 1, 1,
                                                 CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                 "{}", what);
  NV_CUDNN_CHECK(cudnnSetConvolutionGroupCount(p.conv, to_int(s.groups, s)), "{}", what);
  NV_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, CUDNN_FMA_MATH), "{}", what);
  return plan;
}

// Guards the plan cache and the plans (whose algorithms are filled in on first use): each
// cudnn_* call holds it from lookup to launch. Launches are asynchronous, so this is short.
std::mutex& plan_mutex() {
  static std::mutex m;
  return m;
}

// The plan of shape s (created on first sight; plan_mutex held). Plans live as long as the
// process.
Plan& plan_for(const Conv2dShape& s) {
  using Key = std::array<int64_t, 12>;
  static std::map<Key, std::unique_ptr<Plan>> plans;
  const Key key{s.batch,    s.in_channels, s.in_h,     s.in_w,  s.out_channels, s.kernel_h,
                s.kernel_w, s.stride_h,    s.stride_w, s.pad_h, s.pad_w,        s.groups};
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, make_plan(s)).first;
  return *it->second;
}

// The first of cuDNN's heuristic choices that succeeds, is deterministic (the same bits on
// every run: backward ALGO_0 and ALGO_3 accumulate with atomics and are not) and fits
// kMaxWorkspaceBytes, preferring plain FMA math; the math type it was ranked with is applied to
// the descriptor before each call, so the algorithm runs as it was chosen (no TF32 unless the
// heuristics offer nothing else).
template <typename Perf>
Choice choose(const Perf* perf, int count, const Conv2dShape& s, const char* pass) {
  const Perf* fallback = nullptr;
  const Perf* best = nullptr;
  for (int i = 0; i < count && best == nullptr; ++i) {
    const Perf& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > kMaxWorkspaceBytes ||
        p.determinism != CUDNN_DETERMINISTIC) {
      continue;
    }
    if (p.mathType == CUDNN_FMA_MATH || p.mathType == CUDNN_DEFAULT_MATH) best = &p;
    if (fallback == nullptr) fallback = &p;
  }
  if (best == nullptr) best = fallback;
  NV_CHECK(best, "{}: cuDNN offers no deterministic {} algorithm", describe(s), pass);
  return Choice{true, int(best->algo), best->memory, best->mathType};
}

// The pass's algorithm: asked of cuDNN's heuristics on the shape's first call of the pass
// (`query(count, &returned, perf)` ranks up to `count` candidates), remembered in `choice`.
template <typename Perf, int kCount, typename Query>
const Choice& chosen(Choice& choice, const Conv2dShape& s, const char* pass, Query query) {
  if (!choice.chosen) {
    Perf perf[kCount];
    int n = 0;
    NV_CUDNN_CHECK(query(kCount, &n, perf), "{}: choosing the {} algorithm", describe(s), pass);
    choice = choose(perf, n, s, pass);
  }
  return choice;
}

// Applies the chosen algorithm's math type to the convolution descriptor.
void use_math(const Plan& p, const Choice& c, const Conv2dShape& s) {
  NV_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, c.math), "{}: setting the math type",
                 describe(s));
}

void* scratch(size_t bytes) {
  return bytes ? cuda_rt::workspace(bytes) : nullptr;
}

}  // namespace

bool cudnn_built() {
  return true;
}

void cudnn_forward(const Conv2dShape& s, const float* x, const float* w, float* y) {
  std::lock_guard<std::mutex> lock(plan_mutex());
  Plan& p = plan_for(s);
  cudnnHandle_t h = cudnn_handle();
  const Choice& c = chosen<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(
      p.fwd, s, "forward", [&](int count, int* n, cudnnConvolutionFwdAlgoPerf_t* perf) {
        return cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, count, n, perf);
      });
  use_math(p, c, s);
  const float one = 1.0f, zero = 0.0f;
  NV_CUDNN_CHECK(
      cudnnConvolutionForward(h, &one, p.x, x, p.w, w, p.conv, cudnnConvolutionFwdAlgo_t(c.algo),
                              scratch(c.bytes), c.bytes, &zero, p.y, y),
      "{}: forward", describe(s));
}

void cudnn_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
  std::lock_guard<std::mutex> lock(plan_mutex());
  Plan& p = plan_for(s);
  cudnnHandle_t h = cudnn_handle();
  const Choice& c =
      chosen<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(
          p.bwd_data, s, "backward-data",
          [&](int count, int* n, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
            return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x, count, n,
                                                               perf);
          });
  use_math(p, c, s);
  const float one = 1.0f, zero = 0.0f;
  NV_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, p.w, w, p.y, dy, p.conv,
                                              cudnnConvolutionBwdDataAlgo_t(c.algo),
                                              scratch(c.bytes), c.bytes, &zero, p.x, dx),
                 "{}: backward-data", describe(s));
}

void cudnn_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw) {
  std::lock_guard<std::mutex> lock(plan_mutex());
  Plan& p = plan_for(s);
  cudnnHandle_t h = cudnn_handle();
  const Choice& c =
      chosen<cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>(
          p.bwd_filter, s, "backward-filter",
          [&](int count, int* n, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
            return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, p.conv, p.w, count, n,
                                                                 perf);
          });
  use_math(p, c, s);
  const float one = 1.0f, zero = 0.0f;
  NV_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, p.x, x, p.y, dy, p.conv,
                                                cudnnConvolutionBwdFilterAlgo_t(c.algo),
                                                scratch(c.bytes), c.bytes, &zero, p.w, dw),
                 "{}: backward-filter", describe(s));
}

#else  // no cuDNN in this build

bool cudnn_built() {
  return false;
}

void cudnn_forward(const Conv2dShape&, const float*, const float*, float*) {
  NV_FAIL("conv2d: this build has no cuDNN (libcudnn was not found at configure time)");
}
void cudnn_backward_data(const Conv2dShape&, const float*, const float*, float*) {
  NV_FAIL("conv2d: this build has no cuDNN (libcudnn was not found at configure time)");
}
void cudnn_backward_weight(const Conv2dShape&, const float*, const float*, float*) {
  NV_FAIL("conv2d: this build has no cuDNN (libcudnn was not found at configure time)");
}

#endif  // NEXTVIT_WITH_CUDNN

}  // namespace nextvit::kernels::cuda::conv_paths
