#pragma once
// The subcommands of build/nextvit (one file cli/cmd_<name>.cpp each; cli/command.h says how to
// add one) and the program's entry point.
#include <cstdio>
#include <string>
#include <vector>

#include "command.h"

namespace nextvit::cli {

Command info_command();
Command forward_command();
Command train_command();
Command eval_command();
Command predict_command();
Command export_command();

// Every command, in the order `nextvit --help` lists them.
const std::vector<Command>& all_commands();

// build/nextvit: runs the command argv[1]; help and --version go to `out`, errors to `err`.
int run_main(int argc, char** argv, std::FILE* out, std::FILE* err);

// What `nextvit --version` prints: version, build type, CPU ISA path, CUDA and cuDNN.
std::string version_text();

}  // namespace nextvit::cli
