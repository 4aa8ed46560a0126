// build/nextvit: the command-line program. Thin by design: parse, call the library, print.
// The commands and their options are in cli/commands.cpp and cli/cmd_*.cpp.
#include <cstdio>

#include "commands.h"

int main(int argc, char** argv) {
  return nextvit::cli::run_main(argc, argv, stdout, stderr);
}
