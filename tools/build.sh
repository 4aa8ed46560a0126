#!/usr/bin/env bash
# Configures and builds nextvit into build/ (Release).
#
#   tools/build.sh [CMAKE ARGS...]        everything: library, build/nextvit, tests, benchmarks;
#                                         the CUDA backend whenever nvcc is found (so CUDA code
#                                         is compiled, and checked, even without a GPU)
#   tools/build.sh main [CMAKE ARGS...]   just build/nextvit, with CUDA only when a GPU is
#                                         visible (nvidia-smi): the quick build of the main job
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"
target=()
cuda=()
if [ "${1:-}" = "main" ]; then
  shift
  target=(--target nextvit)
  if nvidia-smi -L >/dev/null 2>&1; then cuda=(-DNEXTVIT_CUDA=AUTO); else cuda=(-DNEXTVIT_CUDA=OFF); fi
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "${cuda[@]}" "$@" >/dev/null
cmake --build build -j"$(nproc)" "${target[@]}"
