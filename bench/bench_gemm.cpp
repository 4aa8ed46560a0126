// bench_gemm: throughput of kernels::cpu::gemm on the matrix shapes Next-ViT runs at 224 x 224,
// with 1 and 2 threads, against this CPU's peak and against PyTorch (MKL) in the same run.
//
// Peak. peak = threads x the FP32 peak of one core, measured (bench/fma_peak.h: clock from a
// chain of dependent FMAs, FMA units from independent ones) for the micro-kernel's vector width.
// /proc/cpuinfo's "cpu MHz" is printed beside the measured clock.
//
// A second table times the conv2d kernels built on the GEMM for Next-ViT's conv layers
// (forward, input gradient, weight gradient) against torch.nn.functional.conv2d (oneDNN).
//
// Times are the best of repeated runs for both sides (see best_seconds).
//
// Another table times the weight-heavy products with their weights cold (from memory), as the
// model meets them at batch 1 (see "cold weights").
//
// Usage: bench_gemm [--quick] [--no-torch] [--no-conv] [--no-cold] [--cold] [--threads N]
//                   [--only TEXT]
//   --threads N: only that thread count (default: 1 and 2); --only TEXT: only the GEMM shapes
//   whose name contains TEXT (to compare two builds on one shape); --cold: only the cold-weight
//   table.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <immintrin.h>

#include "bench_util.h"
#include "fma_peak.h"
#include "kernels/conv2d.h"
#include "kernels/gemm.h"

using namespace nextvit;

namespace {

struct Shape3 {
  const char* name;
  int64_t M, N, K;
  bool ta, tb;
};

// The products behind Next-ViT-S at 224 x 224, batch 1: 1x1 convolutions are W (Cout, Cin)
// times X (Cin, H*W) -- the NCBs' MLPs (ratio 3) and the NTBs' (ratio 2); the E-MHSA linears
// on C = 192 / 384 / 768 channels, q and proj on every token, k and v on the 49 pooled ones, in
// training tokens (N, C) times W^T, in eval on the CPU 1x1 convolutions W (C, C) times the
// image's X (C, N) (EMHSA::forward_image); the stem's first convolution (3 -> 64, stride 2,
// 27 inputs per output: too few for the direct kernel) runs on im2col in four chunks of 3136
// columns. The 3x3 convolutions with 32 or more inputs per output run on the direct kernel
// (kernels/cpu/conv_direct.cpp), not on a GEMM: they are timed in the conv table. Then the
// backward products of a 1x1 convolution and two square sizes for reference.
const std::vector<Shape3> kShapes = {
    {"conv1x1 96->288 @56x56", 288, 3136, 96, false, false},
    {"conv1x1 288->96 @56x56", 96, 3136, 288, false, false},
    {"conv1x1 192->576 @28x28", 576, 784, 192, false, false},
    {"conv1x1 384->1152 @14x14", 1152, 196, 384, false, false},
    {"conv1x1 1152->384 @14x14", 384, 196, 1152, false, false},
    {"conv1x1 768->2304 @7x7", 2304, 49, 768, false, false},
    {"conv1x1 2304->768 @7x7", 768, 49, 2304, false, false},
    {"conv1x1 512->1024 @14x14", 1024, 196, 512, false, false},
    {"conv1x1 1024->2048 @7x7", 2048, 49, 1024, false, false},
    {"conv1x1 2048->1024 @7x7", 1024, 49, 2048, false, false},
    {"stem 3x3 3->64 s2 im2col chunk", 64, 3136, 27, false, false},
    {"E-MHSA train x W^T 784x192x192", 784, 192, 192, false, true},
    {"E-MHSA train x W^T 196x384x384", 196, 384, 384, false, true},
    {"E-MHSA train x W^T 49x768x768", 49, 768, 768, false, true},
    {"E-MHSA train x W^T 49x384 (k, v)", 49, 384, 384, false, true},
    {"E-MHSA train x W^T 49x192 (k, v)", 49, 192, 192, false, true},
    {"E-MHSA eval W x 192 @28x28", 192, 784, 192, false, false},
    {"E-MHSA eval W x 384 @14x14", 384, 196, 384, false, false},
    {"E-MHSA eval W x 768 @7x7", 768, 49, 768, false, false},
    {"E-MHSA eval W x 384 @49 (k, v)", 384, 49, 384, false, false},
    {"E-MHSA eval W x 192 @49 (k, v)", 192, 49, 192, false, false},
    {"conv1x1 dX = W^T dY @56x56", 96, 3136, 288, true, false},
    {"conv1x1 dW = dY X^T @56x56", 288, 96, 3136, false, true},
    {"square 512", 512, 512, 512, false, false},
    {"square 1024", 1024, 1024, 1024, false, false},
};

// Seconds of the best of enough runs of f for ~0.25 s of work (~0.06 s with --quick). The
// best run, not the median: the machine is shared, and other processes only ever slow a run
// down. The PyTorch baseline is timed the same way.
double best_seconds(const std::function<void()>& f, bool quick) {
  const double one = bench::time_it(f, 1, 1).min_ms;
  const int runs = std::max(3, std::min(200, int((quick ? 60 : 250) / std::max(one, 1e-3))));
  return bench::time_it(f, 2, runs).min_ms / 1e3;
}

// n floats, 64-byte aligned like every tensor of the framework (core/allocator.cpp): a kernel
// that reads rows in place runs at the speed it has in the model.
struct AlignedFloats {
  float* p;
  explicit AlignedFloats(size_t n)
      : p(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64))) {}
  ~AlignedFloats() { std::free(p); }
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;
};

double time_gemm(const Shape3& s, bool quick) {
  const int64_t rows_a = s.ta ? s.K : s.M, cols_a = s.ta ? s.M : s.K;
  const int64_t rows_b = s.tb ? s.N : s.K, cols_b = s.tb ? s.K : s.N;
  const size_t na = size_t(rows_a * cols_a), nb = size_t(rows_b * cols_b);
  AlignedFloats A(na), B(nb), C(size_t(s.M * s.N));
  for (size_t i = 0; i < na; ++i) A.p[i] = float((i * 7 + 3) % 13) / 13.0f - 0.5f;
  for (size_t i = 0; i < nb; ++i) B.p[i] = float((i * 5 + 1) % 11) / 11.0f - 0.5f;
  return best_seconds(
      [&] {
        kernels::cpu::gemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.p, cols_a, B.p, cols_b, 0.0f, C.p,
                           s.N);
      },
      quick);
}

// Runs a Python script with `threads` torch threads; every output line "i t0 t1 ..." becomes
// result[i] = {t0, t1, ...} (seconds). Empty when Python or torch is missing.
std::map<int, std::vector<double>> run_torch(const std::string& body, int threads, bool quick) {
  std::ostringstream py;
  py << "import time, torch\n"
     << "torch.set_num_threads(" << threads << ")\n"
     << "budget = " << (quick ? 0.06 : 0.25) << "\n"
     << "def best(fn):\n"
        "    fn()\n"
        "    t0 = time.perf_counter(); fn(); one = time.perf_counter() - t0\n"
        "    fn()\n"
        "    ts = []\n"
        "    for _ in range(max(3, min(200, int(budget / max(one, 1e-6))))):\n"
        "        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)\n"
        "    return min(ts)\n"
     << body;
  char path[] = "/tmp/bench_gemm_torch_XXXXXX";
  const int fd = mkstemp(path);
  std::map<int, std::vector<double>> out;
  if (fd < 0) return out;
  const std::string script = py.str();
  const bool written = write(fd, script.data(), script.size()) == ssize_t(script.size());
  close(fd);
  if (written) {
    std::istringstream lines(bench::run_command("python3 " + std::string(path) + " 2>/dev/null"));
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      int i;
      double t;
      if (!(fields >> i)) continue;
      while (fields >> t) out[i].push_back(t);
    }
  }
  std::remove(path);
  return out;
}

std::map<int, std::vector<double>> torch_gemm(int threads, bool quick) {
  std::ostringstream py;
  py << "shapes = [";
  for (const Shape3& s : kShapes) {
    py << "(" << s.M << "," << s.N << "," << s.K << "," << (s.ta ? "True" : "False") << ","
       << (s.tb ? "True" : "False") << "),";
  }
  py << "]\n"
        "for i, (M, N, K, ta, tb) in enumerate(shapes):\n"
        "    a = torch.rand(K, M).t() if ta else torch.rand(M, K)\n"
        "    b = torch.rand(N, K).t() if tb else torch.rand(K, N)\n"
        "    c = torch.empty(M, N)\n"
        "    print(i, best(lambda: torch.mm(a, b, out=c)))\n";
  return run_torch(py.str(), threads, quick);
}

// ---- cold weights: the products as the model meets them at batch 1 ----------------------------

// At batch 1 a forward reads each weight once (Next-ViT-S: 124 MB, several times this CPU's last-
// level cache), so its 1x1 convolutions and linear layers find their weights in memory, not in
// the cache where the table above, repeating one product, finds them. Each call here takes the
// next of enough copies of the weight operand to fill kColdBytes (far past any L3), the
// activations staying the same (in the model they come warm from the previous op); the time is
// a pass over all copies divided by their number, the best of kColdPasses passes. GB/s: weight
// bytes read per second.
constexpr size_t kColdBytes = size_t{320} << 20;
constexpr int kColdPasses = 5;

// The weight-heavy products of Next-ViT-S at batch 1; the weight is A (Cout x Cin) of a 1x1
// convolution (and of E-MHSA's linear layers in eval on the CPU, which run as 1x1 convolutions),
// or B (out x in, transposed) of a linear layer on the tokens.
const std::vector<Shape3> kColdShapes = {
    {"conv1x1 192->576 @28x28", 576, 784, 192, false, false},
    {"conv1x1 384->1152 @14x14", 1152, 196, 384, false, false},
    {"conv1x1 1152->384 @14x14", 384, 196, 1152, false, false},
    {"conv1x1 768->2304 @7x7", 2304, 49, 768, false, false},
    {"conv1x1 2304->768 @7x7", 768, 49, 2304, false, false},
    {"conv1x1 1024->2048 @7x7", 2048, 49, 1024, false, false},
    {"E-MHSA train 49x768 x W^T 768", 49, 768, 768, false, true},
    {"E-MHSA train 196x384 x W^T 384", 196, 384, 384, false, true},
    {"E-MHSA eval W 768 x 768 @7x7", 768, 49, 768, false, false},
    {"E-MHSA eval W 384 x 384 @14x14", 384, 196, 384, false, false},
};

// Copies of the weight operand that fill kColdBytes (at least 8).
int cold_copies(const Shape3& s) {
  const size_t bytes = size_t(s.M * s.K) * sizeof(float);
  return int(std::max<size_t>(8, kColdBytes / bytes));
}

// Seconds per product with the weight operand cold.
double time_gemm_cold(const Shape3& s) {
  const bool weight_is_b = s.tb;  // linear: x (N, in) W^T; conv: W X
  const int64_t wn = weight_is_b ? s.N * s.K : s.M * s.K, xn = weight_is_b ? s.M * s.K : s.K * s.N;
  const int copies = cold_copies(s);
  AlignedFloats W{size_t(wn) * size_t(copies)}, X{size_t(xn)}, C{size_t(s.M * s.N)};
  for (size_t i = 0; i < size_t(wn) * size_t(copies); ++i) W.p[i] = float(i % 13) / 13.0f - 0.5f;
  for (size_t i = 0; i < size_t(xn); ++i) X.p[i] = float(i % 11) / 11.0f - 0.5f;
  auto product = [&](int c) {
    const float* w = W.p + size_t(c) * size_t(wn);
    if (weight_is_b) {
      kernels::cpu::gemm(false, true, s.M, s.N, s.K, 1.0f, X.p, s.K, w, s.K, 0.0f, C.p, s.N);
    } else {
      kernels::cpu::gemm(false, false, s.M, s.N, s.K, 1.0f, w, s.K, X.p, s.N, 0.0f, C.p, s.N);
    }
  };
  double best = 1e30;
  for (int pass = 0; pass <= kColdPasses; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int c = 0; c < copies; ++c) product(c);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (pass > 0) best = std::min(best, sec / copies);  // pass 0 maps the pages
  }
  return best;
}

std::map<int, std::vector<double>> torch_gemm_cold(int threads) {
  std::ostringstream py;
  py << "shapes = [";
  for (const Shape3& s : kColdShapes) {
    py << "(" << s.M << "," << s.N << "," << s.K << "," << (s.tb ? "True" : "False") << ","
       << cold_copies(s) << "),";
  }
  py << "]\n"
        "for i, (M, N, K, linear, copies) in enumerate(shapes):\n"
        "    ws = [torch.rand(N, K) if linear else torch.rand(M, K) for _ in range(copies)]\n"
        "    x = torch.rand(M, K) if linear else torch.rand(K, N)\n"
        "    c = torch.empty(M, N)\n"
        "    def one_pass():\n"
        "        for w in ws:\n"
        "            torch.mm(x, w.t(), out=c) if linear else torch.mm(w, x, out=c)\n"
        "    one_pass()\n"
        "    ts = []\n"
        "    for _ in range("
     << kColdPasses
     << "):\n"
        "        t0 = time.perf_counter(); one_pass(); ts.append(time.perf_counter() - t0)\n"
        "    print(i, min(ts) / copies)\n";
  return run_torch(py.str(), threads, false);
}

void print_cold_table(int threads, double peak, bool torch, const std::string& only) {
  omp_set_num_threads(threads);
  std::map<int, std::vector<double>> tt;
  if (torch) tt = torch_gemm_cold(threads);
  std::printf(
      "GEMM with cold weights (each call the next of %zu MiB of weight copies), threads = %d%s\n",
      kColdBytes >> 20, threads,
      torch && tt.empty() ? "  (PyTorch not available: no baseline)" : "");
  std::printf("%-30s %6s %6s %6s %9s %9s %7s %8s %9s %10s\n", "shape", "M", "N", "K", "ours ms",
              "GFLOP/s", "%peak", "W GB/s", "torch ms", "ours/torch");
  for (size_t i = 0; i < kColdShapes.size(); ++i) {
    const Shape3& s = kColdShapes[i];
    if (std::string(s.name).find(only) == std::string::npos) continue;
    const double sec = time_gemm_cold(s);
    const double gf = 2.0 * double(s.M) * double(s.N) * double(s.K) / sec / 1e9;
    const double wbytes = double(s.tb ? s.N * s.K : s.M * s.K) * sizeof(float);
    std::printf("%-30s %6ld %6ld %6ld %9.3f %9.1f %6.1f%% %8.1f", s.name, long(s.M), long(s.N),
                long(s.K), sec * 1e3, gf, 100.0 * gf / peak, wbytes / sec / 1e9);
    auto it = tt.find(int(i));
    if (it != tt.end() && !it->second.empty()) {
      std::printf(" %9.3f %10.2f", it->second[0] * 1e3, it->second[0] / sec);
    }
    std::printf("\n");
  }
  std::printf("\n");
}

// ---- conv2d: the ops built on the GEMM ---------------------------------------------------------

struct ConvCase {
  const char* name;
  int64_t n, cin, hw, cout, k, stride, pad, groups;
};

// Next-ViT-S at 224 x 224, batch 1: the stem, the grouped 3x3 of MHCA at every stage, and the
// 1x1 convs of an NCB's MLP; plus one batch-8 MHCA, and the training model's shapes.
const std::vector<ConvCase> kConvs = {
    {"stem 3->64 s2 @224", 1, 3, 224, 64, 3, 2, 1, 1},
    {"stem 64->32 @112", 1, 64, 112, 32, 3, 1, 1, 1},
    {"stem 32->64 @112", 1, 32, 112, 64, 3, 1, 1, 1},
    {"stem 64->64 s2 @112", 1, 64, 112, 64, 3, 2, 1, 1},
    {"mhca 96 g3 @56", 1, 96, 56, 96, 3, 1, 1, 3},
    {"mhca 192 g6 @28", 1, 192, 28, 192, 3, 1, 1, 6},
    {"mhca 384 g12 @14", 1, 384, 14, 384, 3, 1, 1, 12},
    {"mhca 768 g24 @7", 1, 768, 7, 768, 3, 1, 1, 24},
    {"mlp 1x1 96->288 @56", 1, 96, 56, 288, 1, 1, 0, 1},
    {"mlp 1x1 288->96 @56", 1, 288, 56, 96, 1, 1, 0, 1},
    {"mlp 1x1 768->2304 @7", 1, 768, 7, 2304, 1, 1, 0, 1},
    {"mhca 96 g3 @56 batch 8", 8, 96, 56, 96, 3, 1, 1, 3},
    // The default training model (nextvit_fmnist, 28 x 28, batch 128): the stem, then an NCB's
    // MHCA and MLP at each stage's map (7 x 7, 4 x 4, 2 x 2, 1 x 1).
    {"fmnist b128 stem 32->64 @14", 128, 32, 14, 64, 3, 1, 1, 1},
    {"fmnist b128 stem 64->64 s2 @14", 128, 64, 14, 64, 3, 2, 1, 1},
    {"fmnist b128 mhca 64 g4 @7", 128, 64, 7, 64, 3, 1, 1, 4},
    {"fmnist b128 mhca 128 g8 @4", 128, 128, 4, 128, 3, 1, 1, 8},
    {"fmnist b128 mhca 192 g12 @2", 128, 192, 2, 192, 3, 1, 1, 12},
    {"fmnist b128 mhca 256 g16 @1", 128, 256, 1, 256, 3, 1, 1, 16},
    {"fmnist b128 1x1 64->192 @7", 128, 64, 7, 192, 1, 1, 0, 1},
    {"fmnist b128 1x1 128->384 @4", 128, 128, 4, 384, 1, 1, 0, 1},
    {"fmnist b128 1x1 192->576 @2", 128, 192, 2, 576, 1, 1, 0, 1},
    {"fmnist b128 1x1 256->768 @1", 128, 256, 1, 768, 1, 1, 0, 1},
    {"fmnist b128 1x1 768->256 @1", 128, 768, 1, 256, 1, 1, 0, 1},
};

kernels::Conv2dShape conv_shape(const ConvCase& c) {
  kernels::Conv2dShape s;
  s.batch = c.n;
  s.in_channels = c.cin;
  s.in_h = s.in_w = c.hw;
  s.out_channels = c.cout;
  s.kernel_h = s.kernel_w = c.k;
  s.stride_h = s.stride_w = c.stride;
  s.pad_h = s.pad_w = c.pad;
  s.groups = c.groups;
  return s;
}

// Multiply-adds of the forward (and of each gradient): every output sums cin/groups x k x k.
int64_t conv_macs(const ConvCase& c) {
  const kernels::Conv2dShape s = conv_shape(c);
  return s.batch * s.out_channels * s.out_h() * s.out_w() * (s.in_channels / s.groups) * c.k * c.k;
}

// Seconds of forward, input gradient and weight gradient.
std::array<double, 3> time_conv(const ConvCase& c, bool quick) {
  const kernels::Conv2dShape s = conv_shape(c);
  std::vector<float> x(size_t(s.batch * s.in_channels * s.in_h * s.in_w), 0.25f);
  std::vector<float> w(size_t(s.out_channels * s.in_channels / s.groups * c.k * c.k), 0.01f);
  std::vector<float> y(size_t(s.batch * s.out_channels * s.out_h() * s.out_w()), 0.5f);
  std::vector<float> dx(x.size()), dw(w.size());
  using namespace kernels::cpu;
  return {
      best_seconds([&] { conv2d_forward(s, x.data(), w.data(), nullptr, y.data(), nullptr); },
                   quick),
      best_seconds([&] { conv2d_backward_data(s, y.data(), w.data(), dx.data(), nullptr); }, quick),
      best_seconds(
          [&] { conv2d_backward_weight(s, x.data(), y.data(), dw.data(), nullptr, nullptr); },
          quick)};
}

std::map<int, std::vector<double>> torch_conv(int threads, bool quick) {
  std::ostringstream py;
  py << "import torch.nn.functional as F\n"
        "convs = [";
  for (const ConvCase& c : kConvs) {
    py << "(" << c.n << "," << c.cin << "," << c.hw << "," << c.cout << "," << c.k << ","
       << c.stride << "," << c.pad << "," << c.groups << "),";
  }
  py << "]\n"
        "for i, (n, cin, hw, cout, k, s, p, g) in enumerate(convs):\n"
        "    x = torch.rand(n, cin, hw, hw, requires_grad=True)\n"
        "    w = torch.rand(cout, cin // g, k, k, requires_grad=True)\n"
        "    with torch.no_grad():\n"
        "        fwd = best(lambda: F.conv2d(x, w, None, s, p, 1, g))\n"
        "    y = F.conv2d(x, w, None, s, p, 1, g)\n"
        "    gy = torch.rand_like(y)\n"
        "    dx = best(lambda: torch.autograd.grad(y, [x], gy, retain_graph=True))\n"
        "    dw = best(lambda: torch.autograd.grad(y, [w], gy, retain_graph=True))\n"
        "    print(i, fwd, dx, dw)\n";
  return run_torch(py.str(), threads, quick);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, torch = true, conv = true, cold = true, warm = true;
  std::vector<int> thread_counts = {1, 2};
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    if (a == "--no-torch") torch = false;
    if (a == "--no-conv") conv = false;
    if (a == "--no-cold") cold = false;
    if (a == "--cold") warm = conv = false;
    if (a == "--threads" && i + 1 < argc) thread_counts = {std::atoi(argv[++i])};
    if (a == "--only" && i + 1 < argc) only = argv[++i];
  }
  const auto isa = kernels::cpu::gemm_isa();
  const bench::FmaPeak core = bench::measure_fma_peak(isa == kernels::cpu::GemmIsa::kAvx512);
  const int lanes = core.lanes;
  const double ghz = core.ghz;
  const int flops_per_cycle = core.flops_per_cycle();
  std::printf("bench_gemm %s  CPU: %s, %d hardware threads\n", bench::today().c_str(),
              bench::cpu_model().c_str(), omp_get_num_procs());
  std::printf(
      "micro-kernel: %s. Clock: %.2f GHz measured (dependent-FMA chain, 4-cycle latency); "
      "/proc/cpuinfo says %.0f MHz.\n",
      kernels::cpu::gemm_isa_name(isa), ghz, bench::cpuinfo_mhz());
  std::printf("FMA issue rate: %.2f %d-bit FMAs per cycle measured (12 independent chains) -> %d\n",
              core.measured, lanes * 32, core.fmas_per_cycle);
  std::printf(
      "peak = threads x %.2f GHz x %d FLOP/cycle (%d FMA/cycle x %d lanes x 2) = %.1f "
      "GFLOP/s per thread\n\n",
      ghz, flops_per_cycle, core.fmas_per_cycle, lanes, ghz * flops_per_cycle);

  for (int threads : warm ? thread_counts : std::vector<int>{}) {
    omp_set_num_threads(threads);
    std::map<int, std::vector<double>> tt;
    if (torch) tt = torch_gemm(threads, quick);
    std::printf("GEMM, threads = %d%s\n", threads,
                torch && tt.empty() ? "  (PyTorch not available: no baseline)" : "");
    std::printf("%-30s %6s %6s %6s %2s %9s %9s %7s %9s %10s\n", "shape", "M", "N", "K", "tr",
                "ours ms", "GFLOP/s", "%peak", "torch ms", "ours/torch");
    for (size_t i = 0; i < kShapes.size(); ++i) {
      const Shape3& s = kShapes[i];
      if (std::string(s.name).find(only) == std::string::npos) continue;
      const double sec = time_gemm(s, quick);
      const double gf = 2.0 * double(s.M) * double(s.N) * double(s.K) / sec / 1e9;
      const double peak = threads * ghz * flops_per_cycle;
      std::printf("%-30s %6ld %6ld %6ld %c%c %9.3f %9.1f %6.1f%%", s.name, long(s.M), long(s.N),
                  long(s.K), s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', sec * 1e3, gf, 100.0 * gf / peak);
      auto it = tt.find(int(i));
      if (it != tt.end() && !it->second.empty()) {
        // Ratio of throughputs: 1.0 = as fast as PyTorch, 0.7 = 70 % of its GFLOP/s.
        std::printf(" %9.3f %10.2f", it->second[0] * 1e3, it->second[0] / sec);
      }
      std::printf("\n");
    }
    std::printf("\n");
  }

  if (cold) {
    for (int threads : thread_counts)
      print_cold_table(threads, threads * ghz * flops_per_cycle, torch, only);
  }

  if (conv) {
    const int threads = 2;
    omp_set_num_threads(threads);
    std::map<int, std::vector<double>> tt;
    if (torch) tt = torch_conv(threads, quick);
    const double peak = threads * ghz * flops_per_cycle;
    std::printf(
        "conv2d (kernels/cpu/conv2d on this GEMM), threads = %d: ms for forward, input "
        "gradient, weight gradient; %%pk: ours as a share of the %d-thread FP32 peak (each "
        "direction 2 x the forward MACs); ratio = torch time / ours (> 1: ours faster)\n",
        threads, threads);
    std::printf("%-30s %8s %8s %8s %5s %5s %5s %8s %8s %8s %6s %6s %6s\n", "layer", "fwd", "dx",
                "dw", "%pk.f", "%pk.x", "%pk.w", "t.fwd", "t.dx", "t.dw", "r.fwd", "r.dx", "r.dw");
    for (size_t i = 0; i < kConvs.size(); ++i) {
      if (!only.empty() && std::string(kConvs[i].name).find(only) == std::string::npos) continue;
      const auto ours = time_conv(kConvs[i], quick);
      const double flops = 2.0 * double(conv_macs(kConvs[i]));
      std::printf("%-30s %8.3f %8.3f %8.3f %4.0f%% %4.0f%% %4.0f%%", kConvs[i].name, ours[0] * 1e3,
                  ours[1] * 1e3, ours[2] * 1e3, 100 * flops / ours[0] / peak / 1e9,
                  100 * flops / ours[1] / peak / 1e9, 100 * flops / ours[2] / peak / 1e9);
      auto it = tt.find(int(i));
      if (it != tt.end() && it->second.size() == 3) {
        const auto& t = it->second;
        std::printf(" %8.3f %8.3f %8.3f %6.2f %6.2f %6.2f", t[0] * 1e3, t[1] * 1e3, t[2] * 1e3,
                    t[0] / ours[0], t[1] / ours[1], t[2] / ours[2]);
      }
      std::printf("\n");
    }
  }
  return 0;
}
