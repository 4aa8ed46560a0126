// build/nextvit: the command-line program. Thin by design: parse, call the library, print.
#include <cstdio>
#include <cstring>
#include <string>

#include "commands.h"
#include "core/error.h"

namespace {

const char* kUsage =
    "usage: nextvit <command> [options]\n"
    "\n"
    "commands:\n"
    "  info     parameters and multiply-accumulates of a model, per stage\n"
    "           --model NAME|CONFIG.json [--img H W] [--num-classes K] [--json]\n"
    "  forward  logits of a batch in eval mode\n"
    "           --model NAME|CONFIG.json --weights W.safetensors --input X.safetensors\n"
    "           --output Y.safetensors [--num-classes K] [--device cpu|cuda]\n"
    "  train    train a Next-ViT (default: a small one on Fashion-MNIST, on the CPU)\n"
    "           [--model NAME] [--data fashion-mnist|DIR] [--epochs E] [--batch B] [--img S]\n"
    "           [--lr LR] [--device cpu|cuda] [--out DIR] [--resume] ... (see README)\n"
    "           data-parallel: mpirun -np N nextvit train ... [--sync-bn] (docs/distributed.md)\n"
    "  eval     top-1 accuracy of saved weights on a data set\n"
    "           --weights DIR|W.safetensors [--model NAME] [--data fashion-mnist|DIR]\n"
    "\n"
    "models: nextvit_fmnist, nextvit_small, nextvit_base, nextvit_large, or a JSON configuration "
    "file\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  try {
    if (command == "info") return nextvit::cli::run_info(argc, argv);
    if (command == "forward") return nextvit::cli::run_forward(argc, argv);
    if (command == "train") return nextvit::cli::run_train(argc, argv);
    if (command == "eval") return nextvit::cli::run_eval(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nextvit %s: error: %s\n", command.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "nextvit: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return 2;
}
