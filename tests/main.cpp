// The test binary's entry point. Tests run with two OpenMP threads by default (the CI machine
// has two cores); set OMP_NUM_THREADS to change it.
//
// CUDA tests are named "cuda: ...". CTest runs each test as its own process with the name as
// the first argument; when such a test is asked for and no CUDA device is present, the binary
// says so and exits with 4, which CTest reports as "Skipped" (SKIP_RETURN_CODE in
// tests/CMakeLists.txt). Run directly, the CUDA tests skip themselves with a warning.
//
// In the emulated CUDA build, ctest sets NVEMU_COVERAGE_FILE: each test process appends its
// name there (the emulator appends the kernels it launches), so that the kernel-coverage test
// can tell a full run from a partial one (tests/test_cuda_emulator.cpp).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/device.h"

int main(int argc, char* argv[]) {
  if (const char* coverage = std::getenv("NVEMU_COVERAGE_FILE"); coverage && argc > 1) {
    std::ofstream(coverage, std::ios::app) << "test: " << argv[1] << "\n";
  }
  if (argc > 1 && std::string(argv[1]).rfind("cuda:", 0) == 0 && !nextvit::cuda_available()) {
    std::printf("SKIPPED %s: no CUDA device (or a build without CUDA)\n", argv[1]);
    return 4;
  }
  return Catch::Session().run(argc, argv);
}
