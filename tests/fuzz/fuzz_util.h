#pragma once
// Shared by the libFuzzer harnesses: a nextvit::Error is the expected answer to bad input and
// is swallowed; anything else escaping (std::bad_alloc, std::out_of_range, a nlohmann exception)
// is a finding, so it aborts and libFuzzer keeps the reproducer.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "core/error.h"
#include "models/nextvit_config.h"

namespace fuzz {

// The small Next-ViT whose weights and checkpoints the harnesses load (one NCB and one NTB:
// every kind of tensor name, a few thousand parameters so that one input takes milliseconds).
constexpr const char* kModelJson = R"({
  "name": "fuzz", "stem_chs": [8, 8, 8], "stage_out_channels": [[8], [32]],
  "stage_block_types": [["NCB"], ["NTB"]], "strides": [1, 2], "sr_ratios": [2, 1],
  "head_dim": 8, "num_classes": 3})";

template <typename F>
int run(F&& body) {
  try {
    body();
  } catch (const nextvit::Error&) {
    // refused cleanly
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finding: a non-nextvit exception escaped: %s\n", e.what());
    std::abort();
  }
  return 0;
}

// A per-process scratch folder (harnesses that exercise a file-reading entry point).
inline std::filesystem::path scratch() {
  static const std::filesystem::path dir = [] {
    auto p = std::filesystem::temp_directory_path() / ("nextvit-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(p);
    return p;
  }();
  return dir;
}

inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = (scratch() / name).string();
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace fuzz
