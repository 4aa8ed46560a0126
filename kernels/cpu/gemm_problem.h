#pragma once
// What the GEMM's paths share (kernels/cpu/gemm.cpp, the overview, dispatches a product to one of
// them; kernels/cpu/gemm_paths.h lists them): one product's arguments as the caller passed them,
// the pack buffers every thread keeps, and when a product is worth a second thread.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "kernels/gemm.h"

namespace nextvit::kernels::cpu::gemm_detail {

// One product's arguments, as the caller passed them (the packers resolve the transposes).
struct Problem {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  GemmRowPass pass;  // run on rows of C as they are finished (see kernels/gemm.h)
  // Maps of the rows of op(A)^T and op(B) (per k) applied while packing: b_map is the caller's
  // (kernels/gemm.h); a_map only in the transposed path, where the caller's B becomes op(A)^T.
  GemmRowAffine a_map = {}, b_map = {};
  GemmColumnBlocks b_blocks = {};  // op(B)'s columns in blocks (kernels/gemm.h): blocked path only
  GemmKBlocks k_blocks = {};       // K in blocks (gemm_nt_k_blocks): blocked path only
  bool blocked_layout() const { return b_blocks.on() || k_blocks.on(); }

  // The pass over C[i, j0 : j0 + n) for rows i in [i0, i1).
  void finish_rows(int64_t i0, int64_t i1, int64_t j0, int64_t n) const {
    if (pass.fn == nullptr || n <= 0) return;
    for (int64_t i = i0; i < i1; ++i) pass.fn(pass.ctx, i, C + i * ldc + j0, n);
  }
};

// The product C^T (N x M) = op(B)^T op(A)^T into t (contiguous, leading dimension M): the
// operands swap places and transposes, the maps go with their operands, and alpha, beta and
// the pass stay with C (the caller applies them as it turns t round into C).
inline Problem transposed_problem(const Problem& p, float* t) {
  Problem f = p;
  f.pass = {};
  f.a_map = p.b_map;  // rows of op(B) are rows of the flipped op(A)^T
  f.b_map = p.a_map;
  f.trans_a = !p.trans_b;
  f.trans_b = !p.trans_a;
  f.M = p.N;
  f.N = p.M;
  f.A = p.B;
  f.lda = p.ldb;
  f.B = p.A;
  f.ldb = p.lda;
  f.alpha = 1.0f;
  f.beta = 0.0f;
  f.C = t;
  f.ldc = p.M;
  return f;
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Per-thread pack buffers, 64-byte aligned, grown on demand and kept for the thread's life
// (OpenMP reuses its threads, so this allocates once per thread).
struct PackBuffers {
  float* a = nullptr;
  float* b = nullptr;
  float* c = nullptr;  // C^T of the transposed path
  // gemm_nt_k_blocks' operands with their K blocks copied together, read by the product that
  // follows (which packs into a and b meanwhile).
  float* k_blocks_a = nullptr;
  float* k_blocks_b = nullptr;
  size_t a_size = 0, b_size = 0, c_size = 0, k_blocks_a_size = 0, k_blocks_b_size = 0;
  ~PackBuffers() {
    std::free(a);
    std::free(b);
    std::free(c);
    std::free(k_blocks_a);
    std::free(k_blocks_b);
  }
  static float* grow(float*& p, size_t& size, size_t need) {
    if (need > size) {
      std::free(p);
      p = static_cast<float*>(std::aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64));
      NV_CHECK(p != nullptr, "gemm: cannot allocate {} bytes of pack buffer", need * sizeof(float));
      size = need;
    }
    return p;
  }
};

inline PackBuffers& thread_buffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

// Below this many multiply-adds a product runs on one thread: waking the second costs a few
// microseconds, which is what ~1 M multiply-adds take on one core...
constexpr double kParallelMinMacs = 1 << 20;
// ...unless its operands hold this many floats (1 MiB): a product with very few rows, such as
// a classifier at batch 1 (1 x 1000 x 1024: 1 M multiply-adds on 4 MB of weights from memory),
// is bound by memory, which two cores stream faster than one (2-core Zen 5, weights cold:
// 0.30-0.32 -> 0.17-0.18 ms).
constexpr double kParallelMinFloats = 1 << 18;

// Whether a product runs on the calling thread alone.
inline bool run_serial(const Problem& p, int threads) {
  const double macs = double(p.M) * double(p.N) * double(p.K);
  const double floats = double(p.K) * double(p.M + p.N);
  return threads <= 1 || (macs < kParallelMinMacs && floats < kParallelMinFloats);
}

}  // namespace nextvit::kernels::cpu::gemm_detail
