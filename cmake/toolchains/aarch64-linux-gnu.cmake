# Cross-compiling for 64-bit ARM Linux (ARM servers, GH200's Grace CPU) with Debian's
# g++-aarch64-linux-gnu, tests run under qemu-user (Debian's qemu-user):
#
#   cmake -S . -B build-arm64 --toolchain cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DNEXTVIT_CUDA=OFF -DNEXTVIT_BENCH=OFF
#   cmake --build build-arm64 -j"$(nproc)" && ctest --test-dir build-arm64
#
# The target's libraries come from the cross toolchain (libstdc++, libgomp); the header-only
# dependencies (nlohmann-json, stb, Catch2) from the host's packages, and fmt header-only
# (NEXTVIT_FMT_HEADER_ONLY) so that no arm64 build of libfmt is needed. JPEG/PNG decoding falls
# back to stb (NEXTVIT_LIBJPEG_PNG=OFF). tools/cross_test.sh does all of this.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# ctest (and Catch2's test discovery at build time) run the test binary through qemu, with the
# cross toolchain's sysroot for the dynamic loader and libraries.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;/usr/aarch64-linux-gnu)
# Programs (cmake, nvcc) from the host; headers and CMake packages from the host too (only
# header-only ones are used); libraries only from the target's directories.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# The host's fmt package (its CMake files sit in the host's multiarch directory), used
# header-only.
file(GLOB NEXTVIT_HOST_FMT_DIR /usr/lib/*-linux-gnu/cmake/fmt)
if(NEXTVIT_HOST_FMT_DIR AND NOT fmt_DIR)
  list(GET NEXTVIT_HOST_FMT_DIR 0 NEXTVIT_HOST_FMT_DIR)
  set(fmt_DIR ${NEXTVIT_HOST_FMT_DIR} CACHE PATH "")
endif()
set(NEXTVIT_FMT_HEADER_ONLY ON CACHE BOOL "" FORCE)
set(NEXTVIT_LIBJPEG_PNG OFF CACHE BOOL "" FORCE)
