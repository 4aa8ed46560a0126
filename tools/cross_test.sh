#!/usr/bin/env bash
# The CPU library and its tests built for aarch64 (ARM servers, GH200's Grace) on an x86-64
# Debian machine, and run under qemu-user: no ARM hardware needed.
#
#   tools/cross_test.sh [CTEST ARGS...]     e.g. tools/cross_test.sh -R "gemm|conv2d"
#
# Installs g++-aarch64-linux-gnu and qemu-user when missing, configures build-arm64/ with
# cmake/toolchains/aarch64-linux-gnu.cmake (CPU only: the portable GEMM micro-kernel, fmt
# header-only, stb for images), builds the test binary, and runs ctest through qemu-aarch64
# (CMAKE_CROSSCOMPILING_EMULATOR). Without arguments it runs the suite minus the tests that
# train for whole epochs (`[trainer]`, `[resume]`, ...: qemu runs ~10-20x slower than native).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
if ((${#need[@]})); then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi
cmake -S . -B build-arm64 --toolchain cmake/toolchains/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DNEXTVIT_CUDA=OFF -DNEXTVIT_BENCH=OFF -DNEXTVIT_CLI=OFF >/dev/null
cmake --build build-arm64 -j"$(nproc)" --target nextvit_tests
aarch64-linux-gnu-readelf -h build-arm64/nextvit_tests | grep -q AArch64 || { echo "cross_test: not an aarch64 binary"; exit 1; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
if (($#)); then
  ctest --test-dir build-arm64 --output-on-failure --timeout 900 "$@"
else
  ctest --test-dir build-arm64 --output-on-failure --timeout 900 -j2 \
    -E "trainer|resume|train:|cuda:|emulator"
fi
