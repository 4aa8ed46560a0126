#pragma once
// The contract every GEMM micro-kernel family implements; kernels/cpu/gemm_blocked_path.cpp packs
// the operands and drives the family chosen at run time (gemm_isa(), kernels/gemm.h):
//
//   gemm_avx512.h    14 x 32 tile, AVX-512F     (x86-64, when the CPU has it)
//   gemm_avx2.h       6 x 16 tile, AVX2 + FMA   (x86-64: the project's baseline, x86-64-v3)
//   gemm_portable.h   8 x 12 tile, GCC/Clang vector extensions: NEON on aarch64; it also runs
//                     on x86 (NEXTVIT_CPU_ISA=portable), so that CI tests it natively
//   gemm_dot.h        dot-product tiles (lanes along K) for a C of few columns, AVX-512 and
//                     AVX2; their own contract is in that file
//
// A micro-kernel computes
//   C[0:ROWS, 0:n] = alpha * (a panel x b panel) + beta * C[0:ROWS, 0:n], C not read when
// beta == 0. a: kc x MR packed (a[k * MR + r]). b: kc rows of NR floats, row k at b + k * ldb:
// a packed panel (ldb = NR) or, in the direct mode, op(B) itself (ldb = its leading dimension).
// ROWS <= MR is a template argument so that an edge panel of A (M not a multiple of MR) costs
// only its real rows; n <= NR is masked at the loads of B and at the C store, so a direct B is
// never read past its last column.
#include <cstdint>

#include "kernels/cpu/isa.h"

namespace nextvit::kernels::cpu::micro {

using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                             int64_t ldc, int n, float alpha, float beta);

}  // namespace nextvit::kernels::cpu::micro
