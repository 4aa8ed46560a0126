// The dot path (kernels/cpu/gemm.cpp, "Narrow C"): a C with so few columns that the blocked
// tiles would leave a fifth of their lanes empty is computed by dot products along K
// (kernels/cpu/gemm_dot.h), A read in place and op(B)^T copied once. AVX-512 and AVX2 only.
#include "kernels/cpu/isa.h"
#if NEXTVIT_CPU_X86
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <utility>

#include "kernels/cpu/gemm_dot.h"
#include "kernels/cpu/gemm_pack.h"
#include "kernels/cpu/gemm_paths.h"
#endif

namespace nextvit::kernels::cpu::gemm_detail {

#if NEXTVIT_CPU_X86
// A family of dot-product kernels: tiles of `rows` x `cols` elements of C, kernels[(r - 1) *
// cols + c - 1] for an r x c edge tile.
struct DotConfig {
  int rows, cols;
  const micro::DotKernel* kernels;
};
constexpr DotConfig kDot512 = {micro::kDotRows512, micro::kDotCols512,
                               micro::kDotKernels512[0].data()};
constexpr DotConfig kDot256 = {micro::kDotRows256, micro::kDotCols256,
                               micro::kDotKernels256[0].data()};

// The dot path takes a product whose C is narrow enough that the blocked tiles would leave more
// than a fifth of their lanes empty (N = 49: 64 lanes for 49 columns), with A read in place (not
// transposed) and K long enough to pay for one horizontal sum per element of C. op(B)^T is then
// at most kDotMaxN x K floats: copying it (when B is not transposed) is cheap.
constexpr int64_t kDotMaxN = 256;
// Rows of A per block: they stay in L2 while every group of columns of C passes over them.
constexpr int64_t kDotBlockBytes = 512 << 10;

const DotConfig* dot_config(const Config& cfg, const Problem& p) {
  if (p.trans_a || p.N > kDotMaxN || p.K < kDotMinK) return nullptr;
  if (10 * p.N >= 8 * ceil_div(p.N, cfg.nr) * cfg.nr) return nullptr;
  return x86_form(kDot512, kDot256);
}

namespace {

// bt[j * ldbt + k] = op(B)(k, j) = B[k * ldb + j] for a B that is not transposed: 8 x 8 blocks
// through registers, the ragged edges one float at a time.
void transpose_b(const Problem& p, float* bt, int64_t ldbt) {
  const int64_t n8 = p.N / 8 * 8, k8 = p.K / 8 * 8;
  for (int64_t j0 = 0; j0 < n8; j0 += 8) {
    for (int64_t k0 = 0; k0 < k8; k0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(p.B + (k0 + i) * p.ldb + j0);
      transpose8x8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(bt + (j0 + i) * ldbt + k0, r[i]);
    }
  }
  for (int64_t j = 0; j < p.N; ++j) {
    for (int64_t k = j < n8 ? k8 : 0; k < p.K; ++k) bt[j * ldbt + k] = p.B[k * p.ldb + j];
  }
  if (!p.b_map.on()) return;
  // The row map (kernels/gemm.h), in the packers' expression: row k of B is column k of bt.
  for (int64_t j = 0; j < p.N; ++j) {
    float* row = bt + j * ldbt;
    for (int64_t k = 0; k < p.K; ++k) row[k] = row[k] * p.b_map.scale[k] + p.b_map.shift[k];
  }
}

// Steps of k per pass of the dot kernels. A group's rows of bt (cols x K floats) must stay in L1
// while every row tile of a block passes down them; at K = 2304 (Next-ViT-S's 2304 -> 768 1x1
// convolution at 7 x 7) the 7 rows of an AVX-512 group take 63 KiB, more than the 48 KiB L1,
// and the product ran at 55 % of peak against 88 % at K = 768. Longer K is therefore cut into
// equal passes (multiples of 16) whose rows of bt fit in kDotL1Bytes, each pass adding its sums
// into C (beta = 1 after the first).
constexpr int64_t kDotL1Bytes = 24 << 10;

int64_t dot_pass_k(const DotConfig& d, int64_t K) {
  const int64_t most =
      std::max<int64_t>(16, kDotL1Bytes / (d.cols * int64_t(sizeof(float))) / 16 * 16);
  const int64_t passes = ceil_div(K, most);
  return ceil_div(ceil_div(K, passes), 16) * 16;
}

// Software prefetch, into L2, of the rows of A the next block of dot_rect will read, spread
// evenly over the kernel calls of the current block: each call asks its kernel to prefetch a
// short run of lines, one per step of its k loop. Why: at batch 1 A is a layer's weights, coming
// from memory; the first group of columns to pass down a block read them while the cores mostly
// waited (the later groups find them in L2). The hardware prefetcher did not hide that: each row
// of A is a stream of its own (a page of its own at K = 1024), three of them read at a time, and
// it follows a stream only after a few misses and within a page. Fetched during the previous
// block, the rows arrive while the cores compute. Measured on the 2-core Xeon (Sapphire Rapids
// class, weights cold): the 7 x 7 products 0.79-0.90x the time at 1 thread, 0.72-0.93x at 2;
// Next-ViT-S at batch 1 about 1 % faster (in-process A/B).
class NextRowsPrefetch {
 public:
  // Rows [r0, r1) of A, spread over `calls` kernel calls.
  NextRowsPrefetch(const Problem& p, int64_t r0, int64_t r1, int64_t calls)
      : base_(p.A + r0 * p.lda),
        lda_(p.lda),
        lines_per_row_((p.K + 15) / 16 + 1),  // + 1: a row need not start on a line
        total_(std::max<int64_t>(r1 - r0, 0) * lines_per_row_),
        per_call_(ceil_div(total_, std::max<int64_t>(calls, 1))) {}
  // The next call's share: where it starts and how many lines (within one row, and at most one
  // per step of the call's k loop).
  std::pair<const float*, int64_t> next(int64_t kb) {
    if (next_ >= total_) return {nullptr, 0};
    const int64_t row = next_ / lines_per_row_, line = next_ % lines_per_row_;
    const int64_t n = std::min({per_call_, lines_per_row_ - line, kb / 16});
    next_ += n;
    return {base_ + row * lda_ + line * 16, n};
  }

 private:
  const float* base_;
  int64_t lda_, lines_per_row_, total_, per_call_, next_ = 0;
};

// C[m0:m1, n0:n1] on the calling thread, in blocks of rows of A that stay in L2 while every
// group of columns passes down them; the kernel's rows of bt (cols x kc floats) stay in L1
// meanwhile.
void dot_rect(const DotConfig& d, const Problem& p, const float* bt, int64_t ldbt, int64_t m0,
              int64_t m1, int64_t n0, int64_t n1) {
  const int64_t block =
      std::max<int64_t>(1, kDotBlockBytes / (p.K * int64_t(sizeof(float))) / d.rows) * d.rows;
  const int64_t kc = dot_pass_k(d, p.K);
  // Columns in groups of nearly equal width (49 = 10 x 4 + 3 x 3 for 4-wide tiles, not 12 x 4 +
  // 1): a 1-column tile has too few accumulators to hide the FMA latency.
  const int64_t groups = ceil_div(n1 - n0, d.cols);
  auto group_col = [&](int64_t g) { return n0 + (n1 - n0) * g / groups; };
  for (int64_t i0 = m0; i0 < m1; i0 += block) {
    const int64_t i1 = std::min(m1, i0 + block);
    NextRowsPrefetch prefetch(p, i1, std::min(m1, i1 + block),
                              ceil_div(p.K, kc) * groups * ceil_div(i1 - i0, d.rows));
    for (int64_t k0 = 0; k0 < p.K; k0 += kc) {
      const int64_t kb = std::min(kc, p.K - k0);
      const float beta = k0 == 0 ? p.beta : 1.0f;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t j = group_col(g);
        const int c = static_cast<int>(group_col(g + 1) - j);
        for (int64_t i = i0; i < i1; i += d.rows) {
          const int r = static_cast<int>(std::min<int64_t>(d.rows, i1 - i));
          const auto [pf, pf_lines] = prefetch.next(kb);
          d.kernels[(r - 1) * d.cols + c - 1](kb, p.A + i * p.lda + k0, p.lda, bt + j * ldbt + k0,
                                              ldbt, p.C + i * p.ldc + j, p.ldc, p.alpha, beta, pf,
                                              pf_lines);
        }
      }
    }
    p.finish_rows(i0, i1, n0, n1 - n0);  // the block's rows of C, still in L2
  }
}

}  // namespace

// The whole product on up to `threads` threads. They split the longer side of C: ranges of
// rows for a narrow C (each thread then reads its own rows of A, the weights), ranges of columns
// when C has fewer rows than columns (each reads its own rows of bt).
void run_dot(const DotConfig& d, const Problem& p, int threads) {
  const float* bt = p.B;
  int64_t ldbt = p.ldb;
  if (!p.trans_b) {
    PackBuffers& buf = thread_buffers();
    // Rows of bt an odd number of cache lines apart. At K = 1024 or 2048 (the NTB's 7 x 7 MLP)
    // rows 4 or 8 KiB apart put the kernel's 7 rows of bt, and the 3 rows of A beside them, in
    // one set of the 8-way L1 at every step of k: the products ran at 1.2-1.4x the time.
    ldbt = panel_stride(p.K, 1);
    float* t = PackBuffers::grow(buf.b, buf.b_size, static_cast<size_t>(p.N * ldbt));
    transpose_b(p, t, ldbt);
    bt = t;
  }
  const double macs = double(p.M) * double(p.N) * double(p.K);
  if (threads <= 1 || macs < kParallelMinMacs) {
    dot_rect(d, p, bt, ldbt, 0, p.M, 0, p.N);
    return;
  }
  const bool split_rows = p.M >= p.N;
  const int64_t side = split_rows ? p.M : p.N, unit = split_rows ? d.rows : d.cols;
  const int64_t units = ceil_div(side, unit);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t lo = std::min(side, units * t / T * unit);
    const int64_t hi = std::min(side, units * (t + 1) / T * unit);
    if (split_rows) {
      dot_rect(d, p, bt, ldbt, lo, hi, 0, p.N);
    } else {
      dot_rect(d, p, bt, ldbt, 0, p.M, lo, hi);
    }
  }
}
#endif

}  // namespace nextvit::kernels::cpu::gemm_detail
