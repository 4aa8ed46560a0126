#!/usr/bin/env bash
# The test command: set up, build, and run every test (CUDA tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh "$@"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
ctest --test-dir build --output-on-failure -j1 --timeout 600
