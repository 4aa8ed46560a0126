// nextvit --version: what was built and which code paths this machine gets.
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "commands.h"
#include "core/threads.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/gemm.h"

#ifdef NEXTVIT_WITH_CUDA
#include <cuda_runtime.h>
#ifdef NEXTVIT_WITH_CUDNN
#include <cudnn.h>
#endif
#endif

// Set by CMakeLists.txt for the nextvit_cli target.
#ifndef NEXTVIT_VERSION
#define NEXTVIT_VERSION "unknown"
#endif
#ifndef NEXTVIT_BUILD_TYPE
#define NEXTVIT_BUILD_TYPE "unknown"
#endif
#ifndef NEXTVIT_CPU_ARCH_FLAGS
#define NEXTVIT_CPU_ARCH_FLAGS "unknown"
#endif

namespace nextvit::cli {
namespace {

std::string compiler() {
#if defined(__clang__)
  return fmt::format("clang {}.{}.{}", __clang_major__, __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
  return fmt::format("GCC {}.{}.{}", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#else
  return "an unknown compiler";
#endif
}

#ifdef NEXTVIT_WITH_CUDA
// 12040 -> "12.4"
std::string cuda_version(int v) {
  return fmt::format("{}.{}", v / 1000, (v % 1000) / 10);
}

std::string cuda_line() {
  int runtime = 0, driver = 0;
  const bool have_runtime = cudaRuntimeGetVersion(&runtime) == cudaSuccess;
  const bool have_driver = cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0;
#ifdef NEXTVIT_CUDA_EMULATED
  std::string s = "emulated on the CPU (NEXTVIT_CUDA=EMULATE), ";
#else
  std::string s;
#endif
  s += "runtime " + (have_runtime ? cuda_version(runtime) : std::string("unknown"));
  s += ", driver " + (have_driver ? cuda_version(driver) : std::string("none"));
#ifdef NEXTVIT_WITH_CUDNN
  // cuDNN 9 encodes major*10000 + minor*100 + patch, cuDNN 8 major*1000 + minor*100 + patch.
  const size_t v = cudnnGetVersion();
  const size_t major = v >= 90000 ? v / 10000 : v / 1000;
  const size_t rest = v >= 90000 ? v % 10000 : v % 1000;
  s += fmt::format(", cuDNN {}.{}.{}", major, rest / 100, rest % 100);
#else
  s += ", no cuDNN";
#endif
  int count = 0;
  cudaDeviceProp p{};
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0 ||
      cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error the probe left
    return s + "; no device visible";
  }
  return s + fmt::format("; {} device(s), cuda:0 = {} (sm_{}{}, {:.0f} GiB)", count, p.name,
                         p.major, p.minor, p.totalGlobalMem / double(1 << 30));
}
#endif

}  // namespace

std::string version_text() {
  std::string s = fmt::format("nextvit {}\n", NEXTVIT_VERSION);
  s += fmt::format("build type: {} ({}, {})\n", NEXTVIT_BUILD_TYPE, compiler(),
                   NEXTVIT_CPU_ARCH_FLAGS);
  const char* forced = std::getenv("NEXTVIT_CPU_ISA");
  const std::string arch =
      *NEXTVIT_CPU_ARCH_FLAGS ? NEXTVIT_CPU_ARCH_FLAGS : "the target's baseline";
  s += fmt::format(
      "CPU ISA: {} GEMM micro-kernels ({}; the other kernels are compiled for {}), "
      "{} OpenMP threads\n",
      kernels::cpu::gemm_isa_name(kernels::cpu::gemm_isa()),
      forced && *forced ? fmt::format("NEXTVIT_CPU_ISA={}", forced)
                        : std::string("chosen at run time from this CPU"),
      arch, num_threads());
  const char* winograd = std::getenv("NEXTVIT_WINOGRAD");
  s += fmt::format(
      "CPU 3x3 convolutions: {}\n",
      kernels::cpu::conv_winograd_available()
          ? "Winograd F(2x2, 3x3) at stride 1 on maps at least 14 wide, else direct or GEMM "
            "(NEXTVIT_WINOGRAD=0 turns Winograd off)"
          : fmt::format("direct or GEMM ({})", winograd && std::strcmp(winograd, "0") == 0
                                                   ? "NEXTVIT_WINOGRAD=0"
                                                   : "no Winograd form for this ISA family"));
#ifdef NEXTVIT_WITH_CUDA
  s += "CUDA: " + cuda_line() + "\n";
#else
  s += "CUDA: no CUDA (this build has no CUDA backend)\n";
#endif
  return s;
}

}  // namespace nextvit::cli
