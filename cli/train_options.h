#pragma once
// The options of `nextvit train`, parsed and range-checked from the command line: one place that
// turns argv into TrainOptions, so that the fuzzer (tests/fuzz/fuzz_cli_args.cpp) exercises the
// same code as the program.
#include <cstdint>
#include <limits>

#include "train/trainer.h"

namespace nextvit::cli {

// Counts of steps and images: any non-negative value a run could reach, with room to add.
constexpr int64_t kMaxCount = std::numeric_limits<int64_t>::max() / 4;

// argv[2..] are the options; *threads receives --threads (0 when not given), *distributed
// --distributed (when not null).
TrainOptions parse_train_options(int argc, char** argv, int* threads, bool* distributed = nullptr);

}  // namespace nextvit::cli
