#!/usr/bin/env bash
# The test command: set up, build everything (CUDA backend included when nvcc is found), and
# run every test. CUDA tests report "Skipped" without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh -DNEXTVIT_CUDA=AUTO "$@"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
ctest --test-dir build --output-on-failure -j1 --timeout 900
