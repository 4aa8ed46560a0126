// bench_cuda_kernels: each hand-written CUDA kernel against the library way of computing the
// same thing, on the shapes Next-ViT-S runs at 224x224, batch 8 (inference) and 128 (training):
//
//   grouped 3x3 conv (MHCA)     ours (grouped_conv3x3.cu)  vs  cuDNN, same shape, all 3 passes
//   pooled attention (E-MHSA)   ours (pooled_attention.cu) vs  cuBLAS batched GEMM + our
//                                                              softmax + cuBLAS batched GEMM
//   BatchNorm + ReLU, training  ours (batch_norm.cu, fused)  vs  cuDNN batch norm, then cuDNN ReLU
//   softmax over rows           ours (softmax.cu)          vs  cuDNN softmax
//
// Method. Both sides get the same device buffers. Each implementation is first checked against
// the other (a difference beyond the stated tolerance aborts before any timing); batch norm is
// checked against the CPU kernel instead, ours strictly, the library's disagreement reported. Then
// it runs `warmup` times, then `runs` times, each run timed with CUDA events around the kernel(s)
// alone, after an L2 flush (a memset of twice the L2 size between runs, outside the events), so
// that batch-8 shapes, which would fit in L2, are timed from device memory as in a real network.
// Reported: median and p90 milliseconds, the rate (TFLOP/s for the convolution, GB/s of the
// fewest bytes the operation must move for the memory-bound kernels), and the fraction of the
// ceiling measured in the same run: a device-to-device cudaMemcpy (bytes read + written) for
// bandwidth, a large cuBLAS SGEMM (fp32, no TF32) for arithmetic; the datasheet-style peaks from
// the clocks are printed beside them.
//
// Usage: bench_cuda_kernels [--batch N] [--runs 50] [--warmup 10]
//                           [--only conv|attention|bn|softmax] [--json FILE]
//                           [--quick]  (small ceilings: for rehearsals on the emulated device)
// Without --batch both 8 and 128 are run.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/args.h"

#ifdef NEXTVIT_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/cuda/check.h"
#include "core/cuda/stream.h"
#include "core/cuda_runtime.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/batch_norm.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/conv2d_paths.h"
#include "kernels/gemm.h"
#include "kernels/pooled_attention.h"
#include "kernels/softmax.h"
#ifdef NEXTVIT_WITH_CUDNN
#include "kernels/cuda/library_handles.h"
#endif
#endif

using namespace nextvit;

#ifdef NEXTVIT_WITH_CUDA
namespace {

struct Stats {
  double median_ms = 0, p90_ms = 0;
};

// Times f with CUDA events: warmup untimed runs, then `runs` runs each preceded by an L2 flush.
// Everything (flush, events, the library's kernels) goes on the library's one stream, so each
// event pair brackets exactly f's kernels, and the gaps between them when f launches several.
class GpuTimer {
 public:
  explicit GpuTimer(size_t l2_bytes) : flush_bytes_(2 * l2_bytes) {
    NV_CUDA_CHECK(cudaMalloc(&flush_, flush_bytes_), "bench_cuda_kernels");
    NV_CUDA_CHECK(cudaEventCreate(&start_), "bench_cuda_kernels");
    NV_CUDA_CHECK(cudaEventCreate(&stop_), "bench_cuda_kernels");
  }
  ~GpuTimer() {
    cudaFree(flush_);
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  Stats time(const std::function<void()>& f, int warmup, int runs) {
    for (int i = 0; i < warmup; ++i) f();
    NV_CUDA_CHECK(cudaDeviceSynchronize(), "bench_cuda_kernels");
    std::vector<double> ms;
    cudaStream_t s = cuda_rt::current_stream();
    for (int i = 0; i < runs; ++i) {
      NV_CUDA_CHECK(cudaMemsetAsync(flush_, i & 0xff, flush_bytes_, s), "bench_cuda_kernels");
      NV_CUDA_CHECK(cudaEventRecord(start_, s), "bench_cuda_kernels");
      f();
      NV_CUDA_CHECK(cudaEventRecord(stop_, s), "bench_cuda_kernels");
      NV_CUDA_CHECK(cudaEventSynchronize(stop_), "bench_cuda_kernels");
      float t = 0;
      NV_CUDA_CHECK(cudaEventElapsedTime(&t, start_, stop_), "bench_cuda_kernels");
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return {ms[ms.size() / 2], ms[std::min(ms.size() - 1, size_t(0.9 * ms.size()))]};
  }

 private:
  void* flush_ = nullptr;
  size_t flush_bytes_;
  cudaEvent_t start_{}, stop_{};
};

struct Gpu {
  std::string name;
  int driver = 0, runtime = 0, sms = 0, cc_major = 0, cc_minor = 0;
  int sm_clock_khz = 0, mem_clock_khz = 0, bus_bits = 0, l2_bytes = 0;
  double peak_fp32_tflops = 0, peak_gbps = 0;  // from the clocks
  double copy_gbps = 0, sgemm_tflops = 0;      // measured here
  int64_t sgemm_n = 0;                         // the SGEMM size of that ceiling
};

Gpu describe_device() {
  Gpu d;
  cudaDeviceProp p{};
  NV_CUDA_CHECK(cudaGetDeviceProperties(&p, 0), "bench_cuda_kernels");
  d.name = p.name;
  d.sms = p.multiProcessorCount;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.l2_bytes = p.l2CacheSize;
  NV_CUDA_CHECK(cudaDriverGetVersion(&d.driver), "bench_cuda_kernels");
  NV_CUDA_CHECK(cudaRuntimeGetVersion(&d.runtime), "bench_cuda_kernels");
  NV_CUDA_CHECK(cudaDeviceGetAttribute(&d.sm_clock_khz, cudaDevAttrClockRate, 0),
                "bench_cuda_kernels");
  NV_CUDA_CHECK(cudaDeviceGetAttribute(&d.mem_clock_khz, cudaDevAttrMemoryClockRate, 0),
                "bench_cuda_kernels");
  NV_CUDA_CHECK(cudaDeviceGetAttribute(&d.bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0),
                "bench_cuda_kernels");
  // FP32 lanes per SM: 64 on sm_70 / sm_80 (V100, A100), 128 on sm_86 and later (H100: 128).
  const int lanes = (d.cc_major == 7 || (d.cc_major == 8 && d.cc_minor == 0)) ? 64 : 128;
  d.peak_fp32_tflops = 2.0 * lanes * d.sms * d.sm_clock_khz * 1e3 / 1e12;
  d.peak_gbps = 2.0 * d.mem_clock_khz * 1e3 * (d.bus_bits / 8) / 1e9;  // DDR: two per clock
  return d;
}

std::string version_str(int v) {
  return fmt::format("{}.{}", v / 1000, v % 1000 / 10);
}

Tensor random_device(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(shape);
  Generator g(seed);
  fill_uniform(t, g, lo, hi);
  return t.to(Device::cuda());
}

Tensor empty_device(const Shape& shape) {
  return Tensor::empty(shape, DType::F32, Device::cuda());
}

const float* cp(const Tensor& t) {
  return t.data<float>();
}
float* mp(const Tensor& t) {
  return t.data<float>();
}

// After a fused ReLU, an input gradient is dy or 0 by the sign of the forward's output. Where
// two implementations' outputs land on opposite sides of 0 (a pre-activation within float
// rounding of it), their gradients differ there by the whole dy, and neither is wrong: on an
// H200 at batch 128, 2 or 3 of 10^8 values (PyTorch's own float32 batch norm, with cuDNN and
// without, differed from float64 the same way). `mask` and `ref_mask` are then the two outputs,
// and those values are left out of the comparison and counted.
struct MaskFlips {
  const Tensor* mask = nullptr;
  const Tensor* ref_mask = nullptr;
};

// max |a - b| / max(|b|) over the values where the masks agree; *flips counts the others.
double rel_error_masked(const std::vector<float>& a, const std::vector<float>& b,
                        const MaskFlips& m, int64_t* flips) {
  std::vector<float> ma, mb;
  if (m.mask != nullptr) ma = m.mask->to_vector(), mb = m.ref_mask->to_vector();
  double err = 0, ref = 0;
  *flips = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ref = std::max(ref, double(std::fabs(b[i])));
    if (!ma.empty() && (ma[i] > 0.0f) != (mb[i] > 0.0f)) {
      ++*flips;
      continue;
    }
    err = std::max(err, double(std::fabs(a[i] - b[i])));
  }
  return ref > 0 ? err / ref : err;
}

// max |a - b| / max(|b|) over the tensors: the check before timing.
double rel_error(const Tensor& a, const Tensor& b) {
  int64_t flips = 0;
  return rel_error_masked(a.to_vector(), b.to_vector(), {}, &flips);
}

void require_close(const char* what, const Tensor& ours, const Tensor& lib, double tol) {
  const double e = rel_error(ours, lib);
  NV_CHECK(e <= tol,
           "{}: ours and the library disagree (max error {:.3g} of the largest value, "
           "tolerance {:.1g})",
           what, e, tol);
}

// Where a kernel family is checked against the CPU kernel (the reference the tests trust:
// double sums, verified against PyTorch), ours must agree with it, and a library that does not
// is reported here (printed after the table and kept in the JSON) rather than taken as the
// truth or as a reason to stop timing.
std::vector<std::string> g_notes;

void check_against_reference(const char* what, const Tensor& ours, const Tensor& lib,
                             const std::string& lib_name, const Tensor& ref, double tol,
                             MaskFlips lib_masks = {}) {
  // Ours computes the CPU kernel's formulas: its ReLU decisions are the reference's.
  require_close(fmt::format("{} (ours against the CPU kernel)", what).c_str(), ours.cpu(), ref,
                tol);
  int64_t flips = 0;
  const double e = rel_error_masked(lib.to_vector(), ref.to_vector(), lib_masks, &flips);
  if (e > tol) {
    g_notes.push_back(fmt::format(
        "{}: {} differs from the CPU kernel by {:.3g} of the largest value (tolerance {:.1g})",
        what, lib_name, e, tol));
  }
  if (flips > 0) {
    std::printf("(%s, %s: %lld of %lld values on the other side of the ReLU, left out)\n", what,
                lib_name.c_str(), (long long)flips, (long long)ref.numel());
  }
}

// ---- ceilings -------------------------------------------------------------------------------

// quick (--quick, for rehearsals on the emulated device): a 16 MiB copy and a 128^3 SGEMM
// instead of 1 GiB and 8192^3.
void measure_ceilings(Gpu& d, GpuTimer& timer, int runs, bool quick) {
  const size_t bytes = quick ? size_t(16) << 20 : size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  NV_CUDA_CHECK(cudaMalloc(&a, bytes), "bench_cuda_kernels");
  NV_CUDA_CHECK(cudaMalloc(&b, bytes), "bench_cuda_kernels");
  NV_CUDA_CHECK(cudaMemset(a, 1, bytes), "bench_cuda_kernels");
  Stats s = timer.time(
      [&] {
        NV_CUDA_CHECK(
            cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, cuda_rt::current_stream()),
            "bench_cuda_kernels: copy");
      },
      3, runs);
  d.copy_gbps = 2.0 * double(bytes) / (s.median_ms * 1e-3) / 1e9;
  NV_CUDA_CHECK(cudaFree(a), "bench_cuda_kernels");
  NV_CUDA_CHECK(cudaFree(b), "bench_cuda_kernels");

  const int64_t n = quick ? 128 : 8192;
  d.sgemm_n = n;
  Tensor x = random_device({n, n}, 1), y = random_device({n, n}, 2), z = empty_device({n, n});
  s = timer.time(
      [&] { kernels::cuda::gemm(false, false, n, n, n, 1.0f, cp(x), n, cp(y), n, 0.0f, mp(z), n); },
      2, std::max(5, runs / 5));
  d.sgemm_tflops = 2.0 * double(n) * n * n / (s.median_ms * 1e-3) / 1e12;
}

// ---- one result row -------------------------------------------------------------------------

struct Row {
  std::string kernel, pass, shape, impl;
  int64_t batch = 0;
  Stats t;
  double rate = 0;  // TFLOP/s or GB/s
  const char* unit = "";
  double fraction = 0;  // of the measured ceiling
  double speedup = 0;   // library median / ours median (on our rows)
};

std::vector<Row> g_rows;

void print_header() {
  std::printf("%-18s %-6s %-30s %-14s %9s %9s %10s %8s %8s\n", "kernel", "pass", "shape", "impl",
              "median", "p90", "rate", "of ceil", "speedup");
}

void add_rows(const std::string& kernel, const std::string& pass, const std::string& shape,
              int64_t batch, const char* unit, double work, double ceiling, Stats ours,
              const std::string& lib_name, Stats lib) {
  auto make = [&](const std::string& impl, Stats t) {
    Row r;
    r.kernel = kernel;
    r.pass = pass;
    r.shape = shape;
    r.impl = impl;
    r.batch = batch;
    r.t = t;
    r.unit = unit;
    r.rate = work / (t.median_ms * 1e-3);
    r.fraction = r.rate / ceiling;
    return r;
  };
  Row a = make("ours", ours), b = make(lib_name, lib);
  a.speedup = lib.median_ms / ours.median_ms;
  for (const Row& r : {a, b}) {
    std::printf("%-18s %-6s %-30s %-14s %8.3fms %8.3fms %6.1f %-3s %7.1f%% %8s\n", r.kernel.c_str(),
                r.pass.c_str(), r.shape.c_str(), r.impl.c_str(), r.t.median_ms, r.t.p90_ms, r.rate,
                r.unit, 100.0 * r.fraction,
                r.impl == "ours" ? fmt::format("{:.2f}x", r.speedup).c_str() : "");
    g_rows.push_back(r);
  }
}

// ---- grouped 3x3 convolution ----------------------------------------------------------------

void bench_grouped_conv(const Gpu& d, GpuTimer& timer, int64_t batch, int warmup, int runs) {
  namespace cp_ = kernels::cuda::conv_paths;
  if (!cp_::cudnn_built()) {
    std::printf("(grouped conv: this build has no cuDNN to compare with)\n");
    return;
  }
  struct Layer {
    const char* name;
    int64_t channels, hw;
  };
  // MHCA of the NCBs (stages 1-4) and of the NTBs (stages 2-4), 32 channels per group.
  const Layer layers[] = {{"NCB s1", 96, 56}, {"NCB s2", 192, 28}, {"NCB s3", 384, 14},
                          {"NCB s4", 768, 7}, {"NTB s2", 64, 28},  {"NTB s3", 128, 14},
                          {"NTB s4", 256, 7}};
  for (const Layer& l : layers) {
    kernels::Conv2dShape s;
    s.batch = batch;
    s.in_channels = s.out_channels = l.channels;
    s.in_h = s.in_w = l.hw;
    s.kernel_h = s.kernel_w = 3;
    s.pad_h = s.pad_w = 1;
    s.groups = l.channels / 32;
    const Shape xs{batch, l.channels, l.hw, l.hw}, ws{l.channels, 32, 3, 3};
    Tensor x = random_device(xs, 1), w = random_device(ws, 2, -0.2f, 0.2f),
           dy = random_device(xs, 3);
    Tensor y1 = empty_device(xs), y2 = empty_device(xs), w1 = empty_device(ws),
           w2 = empty_device(ws);
    const double flops = 2.0 * batch * l.channels * l.hw * l.hw * 32 * 9;
    const std::string shape =
        fmt::format("{} ({}, {}, {}, {})", l.name, batch, l.channels, l.hw, l.hw);
    // forward
    cp_::grouped3x3_forward(s, cp(x), cp(w), mp(y1));
    cp_::cudnn_forward(s, cp(x), cp(w), mp(y2));
    require_close("grouped conv forward", y1, y2, 1e-4);
    Stats a = timer.time([&] { cp_::grouped3x3_forward(s, cp(x), cp(w), mp(y1)); }, warmup, runs);
    Stats b = timer.time([&] { cp_::cudnn_forward(s, cp(x), cp(w), mp(y2)); }, warmup, runs);
    add_rows("grouped conv 3x3", "fwd", shape, batch, "TF/s", flops / 1e12, d.sgemm_tflops, a,
             "cudnn", b);
    // backward data
    cp_::grouped3x3_backward_data(s, cp(dy), cp(w), mp(y1));
    cp_::cudnn_backward_data(s, cp(dy), cp(w), mp(y2));
    require_close("grouped conv backward-data", y1, y2, 1e-4);
    a = timer.time([&] { cp_::grouped3x3_backward_data(s, cp(dy), cp(w), mp(y1)); }, warmup, runs);
    b = timer.time([&] { cp_::cudnn_backward_data(s, cp(dy), cp(w), mp(y2)); }, warmup, runs);
    add_rows("grouped conv 3x3", "bwd-x", shape, batch, "TF/s", flops / 1e12, d.sgemm_tflops, a,
             "cudnn", b);
    // backward weight
    cp_::grouped3x3_backward_weight(s, cp(x), cp(dy), mp(w1));
    cp_::cudnn_backward_weight(s, cp(x), cp(dy), mp(w2));
    require_close("grouped conv backward-weight", w1, w2, 1e-3);
    a = timer.time([&] { cp_::grouped3x3_backward_weight(s, cp(x), cp(dy), mp(w1)); }, warmup,
                   runs);
    b = timer.time([&] { cp_::cudnn_backward_weight(s, cp(x), cp(dy), mp(w2)); }, warmup, runs);
    add_rows("grouped conv 3x3", "bwd-w", shape, batch, "TF/s", flops / 1e12, d.sgemm_tflops, a,
             "cudnn", b);
  }
}

// ---- pooled attention -----------------------------------------------------------------------

void bench_attention(const Gpu& d, GpuTimer& timer, int64_t batch, int warmup, int runs) {
  using kernels::cuda::gemm_strided_batched;
  struct Layer {
    const char* name;
    int64_t heads_per_image, n;
  };
  // E-MHSA at 224: stage 2 (dim 256: 8 heads, 28x28 tokens pooled by 16), stage 3 (512: 16
  // heads, 14x14 pooled by 4), stage 4 (1024: 32 heads, 7x7 unpooled); always 49 keys, d 32.
  const Layer layers[] = {{"NTB s2", 8, 784}, {"NTB s3", 16, 196}, {"NTB s4", 32, 49}};
  const int64_t m = 49, dd = 32;
  const float scale = 1.0f / std::sqrt(float(dd));
  for (const Layer& l : layers) {
    const int64_t H = batch * l.heads_per_image, n = l.n;
    Tensor q = random_device({H, n, dd}, 1, -2.0f, 2.0f), k = random_device({H, m, dd}, 2),
           v = random_device({H, m, dd}, 3), g = random_device({H, n, dd}, 4);
    Tensor out1 = empty_device({H, n, dd}), p1 = empty_device({H, n, m});
    Tensor out2 = empty_device({H, n, dd}), s2 = empty_device({H, n, m}),
           p2 = empty_device({H, n, m});
    // The unfused way, as ops::matmul / ops::softmax would run it: S = scale q k^T (cuBLAS
    // batched GEMM), P = softmax(S) (our softmax kernel), out = P v (batched GEMM).
    auto unfused_forward = [&] {
      gemm_strided_batched(false, true, n, m, dd, scale, cp(q), dd, n * dd, cp(k), dd, m * dd, 0.0f,
                           mp(s2), m, n * m, H);
      kernels::cuda::softmax_forward(H * n, m, cp(s2), mp(p2));
      gemm_strided_batched(false, false, n, dd, m, 1.0f, cp(p2), m, n * m, cp(v), dd, m * dd, 0.0f,
                           mp(out2), dd, n * dd, H);
    };
    auto fused_forward = [&] {
      kernels::cuda::pooled_attention_forward(H, n, m, dd, scale, cp(q), cp(k), cp(v), mp(out1),
                                              mp(p1));
    };
    fused_forward();
    unfused_forward();
    require_close("pooled attention forward (probabilities)", p1, p2, 1e-5);
    require_close("pooled attention forward (output)", out1, out2, 1e-5);
    const std::string shape =
        fmt::format("{} q({}, {}, {}) k({}, {}, {})", l.name, H, n, dd, H, m, dd);
    // Fewest bytes: read q, k, v; write out and the probabilities.
    const double fwd_bytes = 4.0 * (2 * H * n * dd + 2 * H * m * dd + H * n * m);
    Stats a = timer.time(fused_forward, warmup, runs);
    Stats b = timer.time(unfused_forward, warmup, runs);
    add_rows("pooled attention", "fwd", shape, batch, "GB/s", fwd_bytes / 1e9, d.copy_gbps, a,
             "gemm+softmax", b);

    // Backward, unfused: dV = P^T dO, dP = dO V^T, dS = softmax_backward(P, dP),
    // dQ = scale dS K, dK = scale dS^T Q.
    Tensor dq1 = empty_device(q.shape()), dk1 = empty_device(k.shape()),
           dv1 = empty_device(v.shape());
    Tensor dq2 = empty_device(q.shape()), dk2 = empty_device(k.shape()),
           dv2 = empty_device(v.shape()), dp2 = empty_device({H, n, m}),
           ds2 = empty_device({H, n, m});
    auto unfused_backward = [&] {
      gemm_strided_batched(true, false, m, dd, n, 1.0f, cp(p2), m, n * m, cp(g), dd, n * dd, 0.0f,
                           mp(dv2), dd, m * dd, H);
      gemm_strided_batched(false, true, n, m, dd, 1.0f, cp(g), dd, n * dd, cp(v), dd, m * dd, 0.0f,
                           mp(dp2), m, n * m, H);
      kernels::cuda::softmax_backward(H * n, m, cp(p2), cp(dp2), mp(ds2));
      gemm_strided_batched(false, false, n, dd, m, scale, cp(ds2), m, n * m, cp(k), dd, m * dd,
                           0.0f, mp(dq2), dd, n * dd, H);
      gemm_strided_batched(true, false, m, dd, n, scale, cp(ds2), m, n * m, cp(q), dd, n * dd, 0.0f,
                           mp(dk2), dd, m * dd, H);
    };
    auto fused_backward = [&] {
      kernels::cuda::pooled_attention_backward(H, n, m, dd, scale, cp(q), cp(k), cp(v), cp(p1),
                                               cp(g), mp(dq1), mp(dk1), mp(dv1));
    };
    fused_backward();
    unfused_backward();
    require_close("pooled attention backward (dq)", dq1, dq2, 1e-4);
    require_close("pooled attention backward (dk)", dk1, dk2, 1e-4);
    require_close("pooled attention backward (dv)", dv1, dv2, 1e-4);
    // Fewest bytes: read q, k, v, probs, dout; write dq, dk, dv.
    const double bwd_bytes = 4.0 * (3 * H * n * dd + 4 * H * m * dd + H * n * m);
    a = timer.time(fused_backward, warmup, runs);
    b = timer.time(unfused_backward, warmup, runs);
    add_rows("pooled attention", "bwd", shape, batch, "GB/s", bwd_bytes / 1e9, d.copy_gbps, a,
             "gemm+softmax", b);
  }
}

// ---- BatchNorm + ReLU -----------------------------------------------------------------------

void bench_batch_norm(const Gpu& d, GpuTimer& timer, int64_t batch, int warmup, int runs) {
#ifndef NEXTVIT_WITH_CUDNN
  (void)d, (void)timer, (void)batch, (void)warmup, (void)runs;
  std::printf("(batch norm: this build has no cuDNN to compare with)\n");
#else
  struct Layer {
    const char* name;
    int64_t channels, hw;
  };
  // Where Next-ViT-S applies BN + ReLU: the stem's four ConvBNReLU, and MHCA after its grouped
  // convolution in stages 1-4.
  const Layer layers[] = {{"stem 1", 64, 112}, {"stem 2", 32, 112},  {"stem 4", 64, 56},
                          {"MHCA s1", 96, 56}, {"MHCA s2", 192, 28}, {"MHCA s3", 384, 14},
                          {"MHCA s4", 768, 7}};
  cudnnHandle_t h = kernels::cuda::cudnn_handle();
  for (const Layer& l : layers) {
    const Shape xs{batch, l.channels, l.hw, l.hw};
    const int64_t C = l.channels, count = batch * C * l.hw * l.hw;
    kernels::BatchNormShape s;
    s.batch = batch;
    s.channels = C;
    s.spatial = l.hw * l.hw;
    Tensor x = random_device(xs, 1, -1.0f, 3.0f), dy = random_device(xs, 2);
    Tensor w = random_device({C}, 3), b = random_device({C}, 4);
    Tensor rm1 = random_device({C}, 5), rv1 = random_device({C}, 6, 0.5f, 2.0f);
    Tensor rm2 = rm1.clone(), rv2 = rv1.clone();
    Tensor y1 = empty_device(xs), y2 = empty_device(xs), dx1 = empty_device(xs),
           dx2 = empty_device(xs), g2 = empty_device(xs);
    Tensor sm1 = empty_device({C}), si1 = empty_device({C}), sm2 = empty_device({C}),
           si2 = empty_device({C}), dw1 = empty_device({C}), db1 = empty_device({C}),
           dw2 = empty_device({C}), db2 = empty_device({C});
    // cuDNN: spatial batch norm, then ReLU in place; backward: ReLU's, then batch norm's.
    cudnnTensorDescriptor_t xd, cd;
    cudnnActivationDescriptor_t relu;
    NV_CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd), "bn descriptor");
    NV_CUDNN_CHECK(cudnnCreateTensorDescriptor(&cd), "bn descriptor");
    NV_CUDNN_CHECK(cudnnCreateActivationDescriptor(&relu), "relu descriptor");
    NV_CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(batch),
                                              int(C), int(l.hw), int(l.hw)),
                   "bn descriptor");
    NV_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(cd, xd, CUDNN_BATCHNORM_SPATIAL), "bn descriptor");
    NV_CUDNN_CHECK(
        cudnnSetActivationDescriptor(relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0),
        "relu descriptor");
    const float one = 1.0f, zero = 0.0f;
    auto lib_forward = [&] {
      NV_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
                         h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd, cp(x), xd, mp(y2), cd, cp(w),
                         cp(b), 0.1, mp(rm2), mp(rv2), 1e-5, mp(sm2), mp(si2)),
                     "cudnnBatchNormalizationForwardTraining");
      NV_CUDNN_CHECK(cudnnActivationForward(h, relu, &one, xd, cp(y2), &zero, xd, mp(y2)),
                     "cudnnActivationForward");
    };
    auto our_forward = [&] {
      kernels::cuda::batch_norm_forward_train(s, cp(x), cp(w), cp(b), 0.1f, 1e-5f, mp(rm1), mp(rv1),
                                              true, mp(y1), mp(sm1), mp(si1));
    };
    auto lib_backward = [&] {
      // ReLU's backward needs its input; y > 0 exactly where it was > 0, so y stands in.
      NV_CUDNN_CHECK(cudnnActivationBackward(h, relu, &one, xd, cp(y2), xd, cp(dy), xd, cp(y2),
                                             &zero, xd, mp(g2)),
                     "cudnnActivationBackward");
      NV_CUDNN_CHECK(cudnnBatchNormalizationBackward(
                         h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero, xd, cp(x), xd,
                         cp(g2), xd, mp(dx2), cd, cp(w), mp(dw2), mp(db2), 1e-5, cp(sm2), cp(si2)),
                     "cudnnBatchNormalizationBackward");
    };
    auto our_backward = [&] {
      kernels::cuda::batch_norm_backward(s, cp(x), cp(dy), cp(y1), cp(w), cp(sm1), cp(si1), true,
                                         mp(dx1), mp(dw1), mp(db1));
    };
    our_forward();
    lib_forward();
    our_backward();
    lib_backward();
    // The reference: the CPU kernel on the same inputs (running statistics drawn as above).
    const Tensor xc = x.cpu(), dyc = dy.cpu(), wc = w.cpu(), bc = b.cpu();
    Tensor rmc = random_device({C}, 5).cpu(), rvc = random_device({C}, 6, 0.5f, 2.0f).cpu();
    Tensor yc = Tensor::empty(xs), dxc = Tensor::empty(xs), smc = Tensor::empty({C}),
           sic = Tensor::empty({C}), dwc = Tensor::empty({C}), dbc = Tensor::empty({C});
    kernels::cpu::batch_norm_forward_train(s, cp(xc), cp(wc), cp(bc), 0.1f, 1e-5f, mp(rmc), mp(rvc),
                                           true, mp(yc), mp(smc), mp(sic));
    kernels::cpu::batch_norm_backward(s, cp(xc), cp(dyc), cp(yc), cp(wc), cp(smc), cp(sic), true,
                                      mp(dxc), mp(dwc), mp(dbc));
    const std::string lib_name =
        fmt::format("cuDNN {} at {}, batch {}", cudnnGetVersion(), l.name, batch);
    check_against_reference("batch norm + relu forward", y1, y2, lib_name, yc, 1e-4);
    check_against_reference("batch norm + relu backward (dx)", dx1, dx2, lib_name, dxc, 1e-3,
                            {&y2, &yc});
    check_against_reference("batch norm + relu backward (dweight)", dw1, dw2, lib_name, dwc, 1e-3);
    check_against_reference("batch norm + relu backward (dbias)", db1, db2, lib_name, dbc, 1e-3);
    const std::string shape = fmt::format("{} ({}, {}, {}, {})", l.name, batch, C, l.hw, l.hw);
    // Fewest bytes: forward reads x and writes y; backward reads x, dy, y and writes dx.
    Stats a = timer.time(our_forward, warmup, runs), c = timer.time(lib_forward, warmup, runs);
    add_rows("bn+relu", "fwd", shape, batch, "GB/s", 8.0 * count / 1e9, d.copy_gbps, a,
             "cudnn bn,relu", c);
    a = timer.time(our_backward, warmup, runs);
    c = timer.time(lib_backward, warmup, runs);
    add_rows("bn+relu", "bwd", shape, batch, "GB/s", 16.0 * count / 1e9, d.copy_gbps, a,
             "cudnn bn,relu", c);
    cudnnDestroyTensorDescriptor(xd);
    cudnnDestroyTensorDescriptor(cd);
    cudnnDestroyActivationDescriptor(relu);
  }
#endif
}

// ---- softmax --------------------------------------------------------------------------------

#ifdef NEXTVIT_WITH_CUDNN
// softmax over the last dimension of (rows, cols) through cuDNN, and its backward.
struct CudnnSoftmax {
  cudnnTensorDescriptor_t desc = nullptr;
  CudnnSoftmax(int64_t rows, int64_t cols) {
    NV_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc), "softmax descriptor");
    NV_CUDNN_CHECK(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(rows),
                                              int(cols), 1, 1),
                   "softmax descriptor ({}, {})", rows, cols);
  }
  ~CudnnSoftmax() { cudnnDestroyTensorDescriptor(desc); }
  void forward(const float* x, float* y) const {
    const float one = 1.0f, zero = 0.0f;
    NV_CUDNN_CHECK(cudnnSoftmaxForward(kernels::cuda::cudnn_handle(), CUDNN_SOFTMAX_ACCURATE,
                                       CUDNN_SOFTMAX_MODE_INSTANCE, &one, desc, x, &zero, desc, y),
                   "cudnnSoftmaxForward");
  }
  void backward(const float* y, const float* dy, float* dx) const {
    const float one = 1.0f, zero = 0.0f;
    NV_CUDNN_CHECK(
        cudnnSoftmaxBackward(kernels::cuda::cudnn_handle(), CUDNN_SOFTMAX_ACCURATE,
                             CUDNN_SOFTMAX_MODE_INSTANCE, &one, desc, y, desc, dy, &zero, desc, dx),
        "cudnnSoftmaxBackward");
  }
};
#endif

void bench_softmax(const Gpu& d, GpuTimer& timer, int64_t batch, int warmup, int runs) {
#ifndef NEXTVIT_WITH_CUDNN
  (void)d, (void)timer, (void)batch, (void)warmup, (void)runs;
  std::printf("(softmax: this build has no cuDNN softmax to compare with)\n");
#else
  struct Layer {
    const char* name;
    int64_t rows_per_image, cols;
  };
  // E-MHSA's attention rows at 224 (49 keys) per stage, and the 1000-class logits.
  const Layer layers[] = {{"attn s2", 8 * 784, 49},
                          {"attn s3", 16 * 196, 49},
                          {"attn s4", 32 * 49, 49},
                          {"logits", 1, 1000}};
  for (const Layer& l : layers) {
    const int64_t rows = batch * l.rows_per_image, cols = l.cols;
    Tensor x = random_device({rows, cols}, 1, -8.0f, 8.0f), dy = random_device({rows, cols}, 2);
    Tensor y1 = empty_device({rows, cols}), y2 = empty_device({rows, cols}),
           dx1 = empty_device({rows, cols}), dx2 = empty_device({rows, cols});
    const CudnnSoftmax lib(rows, cols);
    kernels::cuda::softmax_forward(rows, cols, cp(x), mp(y1));
    lib.forward(cp(x), mp(y2));
    require_close("softmax forward", y1, y2, 1e-5);
    kernels::cuda::softmax_backward(rows, cols, cp(y1), cp(dy), mp(dx1));
    lib.backward(cp(y2), cp(dy), mp(dx2));
    require_close("softmax backward", dx1, dx2, 1e-4);
    const std::string shape = fmt::format("{} ({}, {})", l.name, rows, cols);
    const double bytes = 4.0 * rows * cols;
    Stats a = timer.time([&] { kernels::cuda::softmax_forward(rows, cols, cp(x), mp(y1)); }, warmup,
                         runs);
    Stats b = timer.time([&] { lib.forward(cp(x), mp(y2)); }, warmup, runs);
    add_rows("softmax", "fwd", shape, batch, "GB/s", 2 * bytes / 1e9, d.copy_gbps, a, "cudnn", b);
    a = timer.time([&] { kernels::cuda::softmax_backward(rows, cols, cp(y1), cp(dy), mp(dx1)); },
                   warmup, runs);
    b = timer.time([&] { lib.backward(cp(y2), cp(dy), mp(dx2)); }, warmup, runs);
    add_rows("softmax", "bwd", shape, batch, "GB/s", 3 * bytes / 1e9, d.copy_gbps, a, "cudnn", b);
  }
#endif
}

}  // namespace
#endif  // NEXTVIT_WITH_CUDA

int main(int argc, char** argv) try {
  int64_t batch = 0;
  int runs = 50, warmup = 10;
  std::string only, json_path;
  bool quick = false;
  cli::Options args("bench_cuda_kernels", "our CUDA kernels against cuDNN and the roofline");
  args.integer("batch", &batch, "B", 1, 1 << 20, "one batch size")
      .shown_default("8 and 128")
      .integer("runs", &runs, "N", 1, 1000000, "timed runs per kernel")
      .integer("warmup", &warmup, "N", 0, 1000000, "untimed runs first")
      .choice("only", &only, {"conv", "attention", "bn", "softmax"}, "one kernel family")
      .shown_default("all")
      .text("json", &json_path, "FILE", "also write the results as JSON")
      .flag("quick", &quick, "small ceilings (16 MiB copy, 128^3 SGEMM): for rehearsals");
  if (!args.parse(argc, argv, 1)) return std::fputs(args.help().c_str(), stdout), 0;
#ifndef NEXTVIT_WITH_CUDA
  std::fprintf(stderr, "bench_cuda_kernels: this build has no CUDA backend\n");
  return 1;
#else
  if (!cuda_rt::available()) {
    std::fprintf(stderr, "bench_cuda_kernels: no CUDA device\n");
    return 1;
  }
  std::vector<int64_t> batches = {8, 128};
  if (batch > 0) batches = {batch};

  Gpu d = describe_device();
  GpuTimer timer(size_t(d.l2_bytes));
  measure_ceilings(d, timer, runs, quick);
  std::printf(
      "%s (sm_%d%d, %d SMs, SM clock %d MHz, memory clock %d MHz), driver %s, CUDA "
      "runtime %s, fp32, %s\n",
      d.name.c_str(), d.cc_major, d.cc_minor, d.sms, d.sm_clock_khz / 1000, d.mem_clock_khz / 1000,
      version_str(d.driver).c_str(), version_str(d.runtime).c_str(), bench::today().c_str());
  std::printf(
      "ceilings measured: D2D copy %.0f GB/s (clock peak %.0f), SGEMM %lld^3 %.1f TFLOP/s "
      "(clock peak %.1f)\n\n",
      d.copy_gbps, d.peak_gbps, (long long)d.sgemm_n, d.sgemm_tflops, d.peak_fp32_tflops);
  print_header();
  for (int64_t batch : batches) {
    if (only.empty() || only == "conv") bench_grouped_conv(d, timer, batch, warmup, runs);
    if (only.empty() || only == "attention") bench_attention(d, timer, batch, warmup, runs);
    if (only.empty() || only == "bn") bench_batch_norm(d, timer, batch, warmup, runs);
    if (only.empty() || only == "softmax") bench_softmax(d, timer, batch, warmup, runs);
  }

  if (!g_notes.empty()) {
    std::printf("\nlibrary results that disagree with the CPU reference (ours agrees):\n");
    for (const std::string& n : g_notes) std::printf("  %s\n", n.c_str());
  }
  if (!json_path.empty()) {
    nlohmann::json rows = nlohmann::json::array();
    for (const Row& r : g_rows) {
      rows.push_back({{"kernel", r.kernel},
                      {"pass", r.pass},
                      {"shape", r.shape},
                      {"impl", r.impl},
                      {"batch", r.batch},
                      {"median_ms", r.t.median_ms},
                      {"p90_ms", r.t.p90_ms},
                      {"rate", r.rate},
                      {"unit", r.unit},
                      {"fraction_of_ceiling", r.fraction},
                      {"speedup_vs_library", r.speedup}});
    }
    nlohmann::json j = {{"benchmark", "cuda_kernels"},
                        {"date", bench::today()},
                        {"precision", "fp32"},
                        {"image", 224},
                        {"runs", runs},
                        {"warmup", warmup},
                        {"environment",
                         {{"gpu", d.name},
                          {"compute_capability", fmt::format("{}.{}", d.cc_major, d.cc_minor)},
                          {"sms", d.sms},
                          {"driver", version_str(d.driver)},
                          {"cuda_runtime", version_str(d.runtime)},
                          {"sm_clock_mhz", d.sm_clock_khz / 1000},
                          {"memory_clock_mhz", d.mem_clock_khz / 1000},
                          {"l2_bytes", d.l2_bytes},
                          {"cpu", bench::cpu_model()}}},
                        {"ceilings",
                         {{"copy_gbps_measured", d.copy_gbps},
                          {"sgemm_tflops_measured", d.sgemm_tflops},
                          {"sgemm_n", d.sgemm_n},
                          {"bandwidth_gbps_from_clocks", d.peak_gbps},
                          {"fp32_tflops_from_clocks", d.peak_fp32_tflops}}},
                        {"rows", rows},
                        {"library_disagreements", g_notes}};
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
#endif
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cuda_kernels: %s\n", e.what());
  return 1;
}
