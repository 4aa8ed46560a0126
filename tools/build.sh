#!/usr/bin/env bash
# Configures and builds nextvit into build/ (Release). Extra arguments go to CMake, e.g.
#   tools/build.sh -DNEXTVIT_CUDA=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)"
