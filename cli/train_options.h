#pragma once
// The options of `nextvit train`: one table (declare_train_options) from which the command line
// is parsed and range-checked into TrainOptions and `nextvit train --help` is written. The
// fuzzer (tests/fuzz/fuzz_cli_args.cpp) exercises the same code through parse_train_options.
#include <cstdint>

#include "common_options.h"
#include "train/trainer.h"

namespace nextvit::cli {

struct TrainValues {
  TrainOptions train;
  int64_t img_width = train.img;  // --img H W must have W = H (the pipelines crop squares)
  int threads = 0;                // --threads; 0 keeps OpenMP's default
};

void declare_train_options(Options& o, TrainValues& v);

// argv[2..] are the options; *threads receives --threads (0 when not given). --help leaves the
// defaults.
TrainOptions parse_train_options(int argc, char** argv, int* threads);

}  // namespace nextvit::cli
