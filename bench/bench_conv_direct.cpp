// The direct convolution for small groups (kernels/cpu/conv_direct.cpp) and the Winograd one
// (kernels/cpu/conv_winograd.cpp) against the GEMM paths they replace (im2col + GEMM, implicit
// GEMM), on Next-ViT-S's MHCA convolutions and the stem's stride-1 ones: forward and input
// gradient (at stride 1 a forward convolution itself), per GEMM ISA family, in CPU milliseconds
// (this process's CPU time: on a shared machine wall-clock time measures the neighbours; with
// several threads Linux adds the other threads' time only at scheduler ticks, so calls this
// short count about the calling thread's, its wall time while it is not descheduled), the best
// of many runs, the three paths interleaved so that all see the same machine. Winograd takes
// maps at least 14 wide (kernels/cpu/conv_winograd.h); where it does not, its column repeats the
// direct kernel's.
//
// Usage: bench_conv_direct [--runs N] [--batch N] [--threads N]
// (speed-ups: GEMM time over direct time, GEMM time over Winograd time)
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/gemm.h"

using namespace nextvit;
using kernels::cpu::GemmIsa;

namespace {

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

struct Case {
  const char* name;
  int64_t cin, cout, hw, groups;
};

}  // namespace

int main(int argc, char** argv) {
  int runs = 30, threads = 1;
  std::vector<int64_t> batches = {1, 8};
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--batch")) batches = {std::atoll(argv[++i])};
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[++i]);
  }
  omp_set_num_threads(threads);
  // MHCA, and the stride-1 convolutions of the stem (dense, 32 or 64 outputs: direct too).
  const Case convs[] = {
      {"mhca 96 g3 @56", 96, 96, 56, 3},      {"mhca 192 g6 @28", 192, 192, 28, 6},
      {"mhca 384 g12 @14", 384, 384, 14, 12}, {"mhca 768 g24 @7", 768, 768, 7, 24},
      {"stem 64->32 @112", 64, 32, 112, 1},   {"stem 32->64 @112", 32, 64, 112, 1}};
  std::printf(
      "CPU ms (process CPU time, %d thread(s), best of %d): GEMM paths / direct / Winograd\n",
      threads, runs);
  for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2}) {
    if (!kernels::cpu::gemm_isa_runs_here(isa)) continue;
    kernels::cpu::set_gemm_isa(isa);
    for (int64_t batch : batches) {
      for (const Case& c : convs) {
        kernels::Conv2dShape s;
        s.batch = batch;
        s.in_channels = c.cin;
        s.out_channels = c.cout;
        s.in_h = s.in_w = c.hw;
        s.kernel_h = s.kernel_w = 3;
        s.pad_h = s.pad_w = 1;
        s.groups = c.groups;
        std::vector<float> x(size_t(batch * c.cin * c.hw * c.hw), 0.25f);
        std::vector<float> w(size_t(c.cout * c.cin / c.groups * 9), 0.01f), b(size_t(c.cout), 0.1f);
        std::vector<float> y(size_t(batch * c.cout * c.hw * c.hw)), dx(x.size());
        // [path: GEMM, direct, Winograd][fwd, bwd-data]
        double best[3][2] = {{1e30, 1e30}, {1e30, 1e30}, {1e30, 1e30}};
        for (int r = 0; r < runs; ++r) {
          for (int path = 0; path < 3; ++path) {
            kernels::cpu::set_conv_direct(path >= 1);
            kernels::cpu::set_conv_winograd(path == 2);
            double t0 = cpu_seconds();
            kernels::cpu::conv2d_forward(s, x.data(), w.data(), b.data(), y.data(), nullptr);
            double t1 = cpu_seconds();
            best[path][0] = std::min(best[path][0], t1 - t0);
            t0 = cpu_seconds();
            kernels::cpu::conv2d_backward_data(s, y.data(), w.data(), dx.data(), nullptr);
            t1 = cpu_seconds();
            best[path][1] = std::min(best[path][1], t1 - t0);
          }
        }
        kernels::cpu::set_conv_direct(true);
        kernels::cpu::set_conv_winograd(true);
        std::printf(
            "%-7s %-18s batch %3lld  fwd %7.3f / %7.3f / %7.3f (%.2fx, %.2fx)  bwd-x %7.3f / %7.3f "
            "/ "
            "%7.3f (%.2fx, %.2fx)\n",
            kernels::cpu::gemm_isa_name(isa), c.name, (long long)batch, 1e3 * best[0][0],
            1e3 * best[1][0], 1e3 * best[2][0], best[0][0] / best[1][0], best[0][0] / best[2][0],
            1e3 * best[0][1], 1e3 * best[1][1], 1e3 * best[2][1], best[0][1] / best[1][1],
            best[0][1] / best[2][1]);
      }
    }
  }
  return 0;
}
