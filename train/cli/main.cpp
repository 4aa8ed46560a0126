// build/nextvit: the command-line program. Each subcommand lives in its own file and is
// registered in commands.h.
#include <cstdio>
#include <string>

#include "core/error.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: nextvit <info|forward> [options]\n");
    return 2;
  }
  std::fprintf(stderr, "nextvit: unknown command '%s'\n", argv[1]);
  return 2;
}
