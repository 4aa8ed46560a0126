// kernels/cpu/gemm: every transpose, odd and edge sizes, alpha/beta, padded leading dimensions,
// the batched form and the threading modes, against a double-precision triple loop, on each
// micro-kernel this CPU can run.
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/batch_norm.h"
#include "kernels/batch_norm_stats.h"
#include "kernels/gemm.h"
#include "test_util.h"

using namespace nextvit;
using kernels::cpu::GemmIsa;

namespace {

// Sets the micro-kernel family for one scope.
class IsaGuard {
 public:
  explicit IsaGuard(GemmIsa isa) : previous_(kernels::cpu::set_gemm_isa(isa)) {}
  ~IsaGuard() { kernels::cpu::set_gemm_isa(previous_); }

 private:
  GemmIsa previous_;
};

// The families to test: every one this build has and this CPU runs (x86-64: AVX2, the
// project's baseline, AVX-512 where the CPU has it, and the portable kernel; elsewhere the
// portable kernel alone).
std::vector<GemmIsa> isas() {
  std::vector<GemmIsa> v;
  for (GemmIsa isa : {GemmIsa::kAvx2, GemmIsa::kAvx512, GemmIsa::kPortable}) {
    if (kernels::cpu::gemm_isa_runs_here(isa)) {
      v.push_back(isa);
    } else {
      WARN("not tested here: the " << kernels::cpu::gemm_isa_name(isa) << " micro-kernel");
    }
  }
  return v;
}

struct Case {
  int64_t M, N, K;
  bool ta, tb;
  float alpha = 1.0f, beta = 0.0f;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // extra columns in each leading dimension
};

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kSentinel = 12345.0f;

// One product's operands laid out as the gemm call sees them: A and B padded with NaN (a read
// of padding would poison the result), C padded with a sentinel that must survive, and C itself
// NaN when beta == 0 (it must not be read).
struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<float> A, B, C, C0;
  Operands(const Case& c, Generator& g) {
    const int64_t rows_a = c.ta ? c.K : c.M, cols_a = c.ta ? c.M : c.K;
    const int64_t rows_b = c.tb ? c.N : c.K, cols_b = c.tb ? c.K : c.N;
    lda = cols_a + c.pad_a;
    ldb = cols_b + c.pad_b;
    ldc = c.N + c.pad_c;
    A.assign(static_cast<size_t>(rows_a * lda), kNaN);
    B.assign(static_cast<size_t>(rows_b * ldb), kNaN);
    C.assign(static_cast<size_t>(c.M * ldc), kSentinel);
    for (int64_t r = 0; r < rows_a; ++r)
      for (int64_t q = 0; q < cols_a; ++q) A[r * lda + q] = g.uniform(-1, 1);
    for (int64_t r = 0; r < rows_b; ++r)
      for (int64_t q = 0; q < cols_b; ++q) B[r * ldb + q] = g.uniform(-1, 1);
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) C[i * ldc + j] = c.beta == 0.0f ? kNaN : g.uniform(-1, 1);
    C0 = C;
  }
  float a(const Case& c, int64_t i, int64_t k) const {
    return c.ta ? A[k * lda + i] : A[i * lda + k];
  }
  float b(const Case& c, int64_t k, int64_t j) const {
    return c.tb ? B[j * ldb + k] : B[k * ldb + j];
  }
};

// Compares C with the double-precision product. The tolerance is the classical bound for a
// float dot product of length K, (K + 2) u sum |a||b| (u = 2^-24), plus the rounding of the
// beta term: a wrong element (a missed or doubled term) is off by far more.
void check_result(const Case& c, const Operands& o, const float* C) {
  int64_t bad = 0;
  std::string first;
  const double u = std::ldexp(1.0, -24);
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N + c.pad_c; ++j) {
      const float got = C[i * o.ldc + j];
      if (j >= c.N) {  // padding of C: untouched
        if (got != kSentinel) {
          if (bad++ < 3) first += fmt::format("  padding C[{}, {}] changed to {}\n", i, j, got);
        }
        continue;
      }
      double dot = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double p = double(o.a(c, i, k)) * double(o.b(c, k, j));
        dot += p;
        mag += std::fabs(p);
      }
      const double c0 = c.beta == 0.0f ? 0.0 : double(o.C0[i * o.ldc + j]);
      const double want = double(c.alpha) * dot + double(c.beta) * c0;
      const double tol = (double(c.K) + 2) * u * std::fabs(c.alpha) * mag +
                         4 * u * std::fabs(double(c.beta) * c0) + 1e-30;
      if (!(std::fabs(got - want) <= tol)) {
        if (bad++ < 3)
          first += fmt::format("  C[{}, {}] = {} want {} (tol {:.3g})\n", i, j, got, want, tol);
      }
    }
  }
  INFO(
      fmt::format("M={} N={} K={} trans=({}, {}) alpha={} beta={} pads=({}, {}, {}) isa={}: {} "
                  "bad elements\n{}",
                  c.M, c.N, c.K, c.ta, c.tb, c.alpha, c.beta, c.pad_a, c.pad_b, c.pad_c,
                  kernels::cpu::gemm_isa_name(kernels::cpu::gemm_isa()), bad, first));
  REQUIRE(bad == 0);
}

void run_case(const Case& c, Generator& g) {
  Operands o(c, g);
  kernels::cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, o.A.data(), o.lda, o.B.data(), o.ldb,
                     c.beta, o.C.data(), o.ldc);
  check_result(c, o, o.C.data());
}

// Shapes chosen for the blocking: 1 and odd sizes; exactly one AVX-512 tile (14 x 32) and one
// more; exactly one K block (kc = 192 AVX-512, 256 portable, 384 AVX2) and just more, split
// unevenly; M beyond one A block (448 rows AVX-512, 384 AVX2, 256 portable); N beyond one B
// block (384 / 512 / 480 columns); few rows of A (op(B) read in place) and just too many; a
// remainder of 1-3 rows merged with the panel before it and split evenly (16 = 8 + 8 and
// 128 = 8 x 14 + 8 + 8 on AVX-512, 8 = 4 + 4 on AVX2), with N a whole number of tiles so that
// the blocked path takes them (a narrow C goes to the dot or transposed path), and over two K
// blocks (a row computed by two tiles would add beta * C twice); K < 64 (B blocks a quarter
// as wide: 96 / 128 / 120 columns) with N over several of them and a ragged last one, as the
// stem's im2col chunk (64 x 3136 x 27).
const std::vector<std::array<int64_t, 3>> kShapes = {
    {16, 64, 50},   {128, 96, 60},  {8, 48, 33},   {16, 64, 400}, {1, 1, 1},
    {2, 3, 4},      {17, 33, 65},   {14, 32, 192}, {14, 32, 384}, {15, 33, 385},
    {100, 7, 3},    {3, 100, 1000}, {29, 65, 769}, {64, 64, 64},  {1, 300, 5},
    {300, 1, 5},    {13, 31, 800},  {56, 200, 50}, {57, 200, 50}, {700, 40, 30},
    {449, 33, 257}, {20, 1100, 20}, {6, 16, 7},    {7, 17, 9},    {64, 421, 27}};

}  // namespace

TEST_CASE("gemm: all transposes on odd and edge shapes match a double-precision product",
          "[gemm]") {
  Generator g(11);
  const float alphas[] = {1.0f, 0.5f, -2.0f, 1.0f}, betas[] = {0.0f, -1.5f, 1.0f, 1.0f};
  for (GemmIsa isa : isas()) {
    IsaGuard guard(isa);
    int variant = 0;
    for (const auto& s : kShapes) {
      for (int t = 0; t < 4; ++t) {
        Case c{s[0], s[1], s[2], (t & 1) != 0, (t & 2) != 0};
        c.alpha = alphas[variant % 4];
        c.beta = betas[variant % 4];
        // Every third case pads all three leading dimensions.
        if (variant % 3 == 0) c.pad_a = 3, c.pad_b = 5, c.pad_c = 2;
        ++variant;
        run_case(c, g);
      }
    }
  }
}

TEST_CASE("gemm: an in-place B whose rows span many pages takes the packing path correctly",
          "[gemm]") {
  // Few rows of A would read B in place, but ldb makes each K block span more than 4 MiB.
  Generator g(12);
  for (GemmIsa isa : isas()) {
    IsaGuard guard(isa);
    run_case({5, 40, 400, false, false, 1.0f, 0.0f, 0, 3000, 0}, g);
    run_case({5, 40, 400, false, false, 1.0f, 0.5f, 2, 3000, 1}, g);
  }
}

TEST_CASE("gemm: narrow C (dot-product and transposed paths) on edge shapes and threads",
          "[gemm]") {
  // A not transposed, N = 48 or 49 and K >= 128 take the 48-column path (kernels/cpu/
  // gemm_cols48.h, panels of 48 on AVX-512; gemm_cols16.h, panels of 16 on AVX2): rows not a
  // multiple of its 6-row tile (1 to 6 rows left), K not a multiple of 16 or 8 (the 49th
  // column's masked tail), op(B) packed from rows or, transposed, from columns; and with B
  // transposed, M = 48 or 49 (x W^T on 49 tokens) take the same kernels on C^T, turned round into
  // C: N = 1, 7, 13 (fewer columns than one 8 x 8 block of the turn-round), 200 and 301 (ragged
  // edges), K tails; and 96 to 256 columns with at least as many rows run in panels, each with at
  // most one extra column: on AVX-512 N = 196 (4 panels, 4 extra), 97 (2, 1), 144 (3, 0), 245
  // (5, 5), while 256 would need 16 extra columns for its 5 panels and 111 15 for 2, and stay on
  // the other paths; on AVX2 196 (12, 4), 97 (6, 1), 144 (9, 0), 245 (15, 5), 256 (16, 0), while
  // 111 (6, 15) stays on the other paths. Otherwise
  // A not transposed, K >= 128 and N leaving more than a fifth of the blocked tiles' lanes
  // empty take the dot path (kernels/cpu/gemm_dot.h; N = 1, 5, 13, 33, 100 here): rows not a
  // multiple of its 3-row tile, columns not a multiple of its 7 (AVX-512) or 4 (AVX2), K not a
  // multiple of 16 or 8 (masked tail), op(B)^T read in place (trans_b) or copied; K = 2297 in
  // passes of at most 864 (AVX-512) or 1536 (AVX2) steps, each adding into C, the last one
  // masked; K = 1024, where the copied op(B)^T gets rows padded to an odd number of cache
  // lines (no 4 KiB aliasing). N = 196 on AVX-512 (224 lanes) with
  // M = 61 takes the transposed path (C^T computed, then turned round into C), with every
  // transpose. The others with a transposed A take the blocked path, a cross-check. The large
  // ones (> 1 M multiply-adds) run on one and on two threads.
  Generator g(16);
  const std::vector<std::array<int64_t, 3>> shapes = {
      {10, 49, 200},     {2, 1, 130},     {4, 5, 129},     {8, 13, 144},    {23, 100, 131},
      {121, 49, 96 * 8}, {61, 196, 385},  {31, 49, 2297},  {40, 49, 1024},  {7, 48, 133},
      {13, 49, 130},     {6, 48, 300},    {1, 49, 129},    {5, 49, 128},    {49, 200, 130},
      {48, 7, 300},      {49, 1, 129},    {49, 13, 144},   {49, 301, 777},  {200, 196, 385},
      {97, 97, 130},     {150, 144, 200}, {263, 245, 131}, {263, 256, 131}, {120, 111, 137},
      {31, 33, 2297},    {40, 33, 1024}};
  const int saved = omp_get_max_threads();
  for (GemmIsa isa : isas()) {
    IsaGuard guard(isa);
    int variant = 0;
    for (const auto& s : shapes) {
      for (int t = 0; t < 4; ++t, ++variant) {
        Case c{s[0], s[1], s[2], (t & 2) != 0, (t & 1) != 0};
        c.alpha = variant % 2 == 0 ? 1.0f : -0.75f;
        c.beta = variant % 3 == 0 ? 0.0f : 0.5f;  // beta = 0: C holds NaN and must not be read
        if (variant % 2 == 1) c.pad_a = 5, c.pad_b = 3, c.pad_c = 1;
        omp_set_num_threads(1 + variant % 2);
        run_case(c, g);
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("gemm: K = 0 or alpha = 0 only scales C, M or N = 0 touches nothing", "[gemm]") {
  std::vector<float> C = {kNaN, kNaN, kNaN, kNaN};
  kernels::cpu::gemm(false, false, 2, 2, 0, 1.0f, nullptr, 0, nullptr, 2, 0.0f, C.data(), 2);
  REQUIRE(C == std::vector<float>{0, 0, 0, 0});  // beta = 0 overwrites even NaN
  C = {1, 2, 3, 4};
  kernels::cpu::gemm(false, false, 2, 2, 0, 1.0f, nullptr, 0, nullptr, 2, 2.0f, C.data(), 2);
  REQUIRE(C == std::vector<float>{2, 4, 6, 8});
  const std::vector<float> A = {1, 1, 1, 1}, B = {1, 1, 1, 1};
  kernels::cpu::gemm(false, false, 2, 2, 2, 0.0f, A.data(), 2, B.data(), 2, 0.5f, C.data(), 2);
  REQUIRE(C == std::vector<float>{1, 2, 3, 4});
  kernels::cpu::gemm(false, false, 0, 2, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(), 2);
  kernels::cpu::gemm(false, false, 2, 0, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(), 2);
  REQUIRE(C == std::vector<float>{1, 2, 3, 4});
}

TEST_CASE("gemm: one thread, two threads and calls inside a parallel region agree", "[gemm]") {
  Generator g(13);
  const int saved = omp_get_max_threads();
  // Large enough (~6 M multiply-adds) to be split across threads; N and M both odd.
  const std::vector<Case> cases = {{199, 301, 101, false, false},
                                   {301, 45, 201, true, true, 0.7f, 0.3f},
                                   {40, 1200, 150, false, true}};
  for (GemmIsa isa : isas()) {
    IsaGuard guard(isa);
    for (const Case& c : cases) {
      for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        run_case(c, g);
      }
      omp_set_num_threads(2);
      // Each thread of an outer region runs its own product: the GEMM must stay on its thread
      // and keep its pack buffers per thread.
      Operands o0(c, g), o1(c, g);
      Operands* ops[2] = {&o0, &o1};
#pragma omp parallel num_threads(2)
      {
        Operands& o = *ops[omp_get_thread_num()];
        kernels::cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, o.A.data(), o.lda, o.B.data(), o.ldb,
                           c.beta, o.C.data(), o.ldc);
      }
      check_result(c, o0, o0.C.data());
      check_result(c, o1, o1.C.data());
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("gemm: every thread count gives the same bits, on every path", "[gemm]") {
  // The threads cut C into rectangles (blocked and transposed paths) or ranges of rows (dot
  // path), but every element is still summed over the same K blocks in the same order: the
  // result must not depend on the thread count. 3 and 4 threads give 1 x 3, 3 x 1 and 2 x 2
  // grids, whose boundaries fall inside the transposed path's 8 x 8 blocks. Shapes: blocked
  // (odd sizes, and few rows of A with B read in place: the stem's 32 x 224 x 576 chunk);
  // transposed (N = 196 on AVX-512, every transpose, beta != 0 and not a power of 2, so that the
  // turned-round edges read C and round beta * C); dot (N = 33 and 13, op(B)^T copied or read
  // in place; K = 2297 in passes; N = 100 > M = 23, whose columns the threads split into groups
  // of other widths); 48-column (N = 49 with 301 rows; N = 196 in 4 panels, each with an extra
  // column; M = 49 with B transposed, whose threads each turn round their own columns of C).
  Generator g(17);
  const std::vector<Case> cases = {
      {199, 301, 101, false, false, 0.5f, -1.0f, 3, 5, 2},
      {32, 224, 576, false, false},
      {61, 196, 385, false, false, -0.75f, 0.3f, 5, 3, 1},
      {61, 196, 385, true, true, 1.0f, 0.7f},
      {256, 196, 300, true, false, 2.0f, -1.3f},
      {1152, 196, 64, false, true},
      {301, 49, 768, false, false, 1.0f, 0.6f, 2, 1, 3},
      {400, 13, 640, false, true, -1.0f, 1.0f},
      {97, 49, 2297, false, false, 0.5f, 0.25f},
      {97, 33, 2297, false, false, 0.5f, 0.25f},
      {23, 100, 900, false, true, 1.0f, 0.4f, 2, 3, 1},
      {49, 301, 768, false, true, -0.5f, 0.3f, 1, 2, 3},
      {48, 200, 500, true, true, 1.0f, 0.0f},
      {385, 196, 300, false, false, 0.5f, -0.7f, 1, 3, 2},
  };
  const int saved = omp_get_max_threads();
  for (GemmIsa isa : isas()) {
    IsaGuard guard(isa);
    for (const Case& c : cases) {
      Operands o(c, g);
      std::vector<float> first;
      for (int threads : {1, 2, 3, 4}) {
        omp_set_num_threads(threads);
        std::vector<float> C = o.C0;
        kernels::cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, o.A.data(), o.lda, o.B.data(), o.ldb,
                           c.beta, C.data(), o.ldc);
        INFO("M=" << c.M << " N=" << c.N << " K=" << c.K << " trans=(" << c.ta << ", " << c.tb
                  << ") isa=" << kernels::cpu::gemm_isa_name(isa) << " threads=" << threads);
        check_result(c, o, C.data());
        if (threads == 1) {
          first = C;
        } else {
          REQUIRE(std::memcmp(C.data(), first.data(), sizeof(float) * C.size()) == 0);
        }
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("gemm_with_pass: every element finished once, after its last K block, on every path",
          "[gemm]") {
  // The pass c = c * 0.5 + row must leave exactly gemm's result put through it once: a missed
  // run, a second one, a run before the last K block (K = 500: three blocks of 192 on AVX-512)
  // or with a wrong row index changes the bits. Paths: blocked (one and several K blocks),
  // transposed (N = 196 with 61 rows), dot (N = 33 with K in passes; N = 100 split by columns),
  // 48-column (N = 196 with 300 rows: 4 panels, each with an extra column; M = 49 with B
  // transposed: the pass after the turn-round, on each thread's columns),
  // and
  // K = 0 (C only scaled); 1 to 3 threads.
  Generator g(19);
  const std::vector<Case> cases = {
      {199, 301, 101, false, false, 1.0f, 0.0f, 0, 0, 3},
      {64, 100, 500, false, false, 0.5f, 0.7f},
      {61, 196, 385, false, false, 1.0f, 0.0f, 1, 2, 1},
      {301, 49, 2297, false, false},
      {23, 100, 900, false, true, 1.0f, 0.25f},
      {5, 7, 0, false, false, 1.0f, 0.5f},
      {49, 301, 768, false, true, 1.0f, 0.5f, 1, 2, 3},
      {300, 196, 500, false, true, 1.0f, 0.5f},
      {301, 33, 2297, false, false},
  };
  const kernels::cpu::GemmRowPass pass{[](const void*, int64_t row, float* c, int64_t n) {
                                         for (int64_t j = 0; j < n; ++j)
                                           c[j] = c[j] * 0.5f + float(row);
                                       },
                                       nullptr};
  const int saved = omp_get_max_threads();
  for (GemmIsa isa : isas()) {
    IsaGuard guard(isa);
    for (const Case& c : cases) {
      Operands o(c, g);
      std::vector<float> want = o.C0;
      kernels::cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, o.A.data(), o.lda, o.B.data(), o.ldb,
                         c.beta, want.data(), o.ldc);
      for (int64_t i = 0; i < c.M; ++i) {
        for (int64_t j = 0; j < c.N; ++j) want[i * o.ldc + j] = want[i * o.ldc + j] * 0.5f + i;
      }
      for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        std::vector<float> C = o.C0;
        kernels::cpu::gemm_with_pass(c.ta, c.tb, c.M, c.N, c.K, c.alpha, o.A.data(), o.lda,
                                     o.B.data(), o.ldb, c.beta, C.data(), o.ldc, pass);
        INFO("M=" << c.M << " N=" << c.N << " K=" << c.K << " trans=(" << c.ta << ", " << c.tb
                  << ") isa=" << kernels::cpu::gemm_isa_name(isa) << " threads=" << threads);
        REQUIRE(std::memcmp(C.data(), want.data(), sizeof(float) * C.size()) == 0);
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("gemm_with_pass: a map of B's rows gives the bits of gemm on the BatchNorm's output",
          "[gemm][batch_norm]") {
  // op(B)(k, j) = B[k, j] * scale[k] + shift[k] applied by the packers must be exactly the
  // product of the tensor the eval BatchNorm kernel stores (the map's contract). Paths: blocked
  // with several K blocks, a shape that would read B in place without the map (M = 20: at most
  // 4 panels of A), transposed (N = 196; B's rows become the flipped A's), dot (N = 33, K in
  // passes), 48-column (N = 49), dot split by columns (N = 100), a transposed A; 1 to 3 threads,
  // every ISA.
  Generator g(23);
  const std::vector<Case> cases = {
      {64, 100, 500, false, false, 0.5f, 0.7f},
      {20, 300, 64, false, false},
      {61, 196, 385, false, false, 1.0f, 0.0f, 1, 2, 1},
      {301, 49, 2297, false, false},
      {23, 100, 900, false, false, 1.0f, 0.25f},
      {150, 160, 120, true, false},
      {301, 33, 2297, false, false},
  };
  const int saved = omp_get_max_threads();
  for (const Case& c : cases) {
    Operands o(c, g);
    // A BatchNorm over the K rows of B: its alpha and beta are the map, its output the B that
    // the plain product multiplies.
    std::vector<float> gamma(c.K), bias(c.K), mean(c.K), var(c.K), scale(c.K), shift(c.K);
    for (int64_t k = 0; k < c.K; ++k) {
      gamma[k] = g.uniform(0.5f, 1.5f);
      bias[k] = g.uniform(-1, 1);
      mean[k] = g.uniform(-1, 1);
      var[k] = g.uniform(0.5f, 2.0f);
      const kernels::BatchNormAffine a = kernels::batch_norm_affine(
          mean[k], kernels::batch_norm_eval_invstd(var[k], 1e-5f), gamma.data(), bias.data(), k);
      scale[k] = a.alpha;
      shift[k] = a.beta;
    }
    std::vector<float> dense(c.K * c.N), normed(c.K * c.N), save_mean(c.K), save_invstd(c.K);
    for (int64_t k = 0; k < c.K; ++k)
      std::memcpy(&dense[k * c.N], &o.B[k * o.ldb], sizeof(float) * c.N);
    kernels::cpu::batch_norm_forward_eval({1, c.K, c.N}, dense.data(), gamma.data(), bias.data(),
                                          mean.data(), var.data(), 1e-5f, false, normed.data(),
                                          save_mean.data(), save_invstd.data());
    std::vector<float> mapped_b = o.B;
    for (int64_t k = 0; k < c.K; ++k)
      std::memcpy(&mapped_b[k * o.ldb], &normed[k * c.N], sizeof(float) * c.N);
    for (GemmIsa isa : isas()) {
      IsaGuard guard(isa);
      std::vector<float> want = o.C0;
      kernels::cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, o.A.data(), o.lda, mapped_b.data(),
                         o.ldb, c.beta, want.data(), o.ldc);
      for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        std::vector<float> C = o.C0;
        kernels::cpu::gemm_with_pass(c.ta, c.tb, c.M, c.N, c.K, c.alpha, o.A.data(), o.lda,
                                     o.B.data(), o.ldb, c.beta, C.data(), o.ldc, {},
                                     {scale.data(), shift.data()});
        INFO("M=" << c.M << " N=" << c.N << " K=" << c.K << " trans_a=" << c.ta
                  << " isa=" << kernels::cpu::gemm_isa_name(isa) << " threads=" << threads);
        REQUIRE(std::memcmp(C.data(), want.data(), sizeof(float) * C.size()) == 0);
      }
    }
  }
  omp_set_num_threads(saved);
  std::vector<float> A(16, 1.0f), B(16, 1.0f), C(16), s(4, 1.0f);
  REQUIRE_THROWS_WITH(
      kernels::cpu::gemm_with_pass(false, true, 4, 4, 4, 1.0f, A.data(), 4, B.data(), 4, 0.0f,
                                   C.data(), 4, {}, {s.data(), s.data()}),
      Catch::Contains("applies to a B that is not transposed"));
  REQUIRE_THROWS_WITH(
      kernels::cpu::gemm_with_pass(false, false, 4, 4, 4, 1.0f, A.data(), 4, B.data(), 4, 0.0f,
                                   C.data(), 4, {}, {s.data(), nullptr}),
      Catch::Contains("needs both scale and shift"));
}

TEST_CASE(
    "gemm_with_pass: B's columns in blocks, read where they lie, on every ISA and thread count",
    "[gemm]") {
  // A convolution's chunk of small images: column j of B at block j / span (stride floats
  // apart), row k at k * ldb, offset j % span. Spans of 1, 4 (2 x 2), 16 (4 x 4, one vector), 49
  // (7 x 7, across vectors and panels) and 196 (14 x 14), a ragged last block, rows padded
  // (ldb > span), gaps between blocks, several K blocks, a transposed A, a map of B's rows, beta.
  // Gaps and padding hold NaN: a read of them would poison C.
  struct Blocked {
    Case c;
    int64_t span, pad, gap;
    bool map;
  };
  const std::vector<Blocked> cases = {
      {{40, 384, 100, false, false}, 16, 0, 0, false},
      {{30, 343, 200, true, false, 1.0f, 0.5f}, 49, 0, 5, false},
      {{96, 256, 64, false, false}, 4, 0, 0, true},
      {{15, 588, 33, false, false}, 196, 3, 0, false},
      {{9, 100, 20, false, false, 0.5f}, 1, 0, 2, false},
      {{50, 88, 400, false, false}, 16, 1, 7, true},
  };
  Generator g(31);
  const int saved = omp_get_max_threads();
  for (const Blocked& t : cases) {
    const Case& c = t.c;
    Operands o(c, g);  // o.B: the dense (K, N) matrix the blocks hold
    std::vector<float> scale(c.K, 1.0f), shift(c.K, 0.0f);
    if (t.map) {
      for (int64_t k = 0; k < c.K; ++k)
        scale[k] = g.uniform(0.5f, 1.5f), shift[k] = g.uniform(-1, 1);
    }
    const int64_t ldb = t.span + t.pad, stride = c.K * ldb + t.gap;
    const int64_t blocks = (c.N + t.span - 1) / t.span;
    const std::vector<float> dense = o.B;  // unmapped
    std::vector<float> B(static_cast<size_t>(blocks * stride), kNaN);
    for (int64_t k = 0; k < c.K; ++k) {
      for (int64_t j = 0; j < c.N; ++j) {
        B[j / t.span * stride + k * ldb + j % t.span] = o.B[k * o.ldb + j];
        if (t.map) o.B[k * o.ldb + j] = o.B[k * o.ldb + j] * scale[k] + shift[k];
      }
    }
    const kernels::cpu::GemmRowAffine map =
        t.map ? kernels::cpu::GemmRowAffine{scale.data(), shift.data()}
              : kernels::cpu::GemmRowAffine{};
    for (GemmIsa isa : isas()) {
      IsaGuard guard(isa);
      for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        std::vector<float> C = o.C0;
        kernels::cpu::gemm_with_pass(c.ta, false, c.M, c.N, c.K, c.alpha, o.A.data(), o.lda,
                                     B.data(), ldb, c.beta, C.data(), o.ldc, {}, map,
                                     {t.span, stride});
        INFO("span=" << t.span << " threads=" << threads);
        check_result(c, o, C.data());
        if (t.map) {
          // The map's values are the plain packer's to the bit (both shapes with a map take the
          // blocked path densely too): an eval convolution's pre-norm gives an image in a chunk
          // the output it has alone.
          std::vector<float> want = o.C0;
          kernels::cpu::gemm_with_pass(c.ta, false, c.M, c.N, c.K, c.alpha, o.A.data(), o.lda,
                                       dense.data(), o.ldb, c.beta, want.data(), o.ldc, {}, map);
          REQUIRE(std::memcmp(C.data(), want.data(), sizeof(float) * C.size()) == 0);
        }
      }
    }
  }
  omp_set_num_threads(saved);
  std::vector<float> A(16, 1.0f), B(16, 1.0f), C(16);
  REQUIRE_THROWS_WITH(kernels::cpu::gemm_with_pass(false, true, 4, 4, 4, 1.0f, A.data(), 4,
                                                   B.data(), 4, 0.0f, C.data(), 4, {}, {}, {2, 8}),
                      Catch::Contains("column blocks apply to a B that is not transposed"));
  REQUIRE_THROWS_WITH(kernels::cpu::gemm_with_pass(false, false, 4, 4, 4, 1.0f, A.data(), 4,
                                                   B.data(), 1, 0.0f, C.data(), 4, {}, {}, {2, 8}),
                      Catch::Contains("too small"));
  REQUIRE_THROWS_WITH(kernels::cpu::gemm_with_pass(false, false, 4, 4, 4, 1.0f, A.data(), 4,
                                                   B.data(), 4, 0.0f, C.data(), 4, {}, {}, {2, -1}),
                      Catch::Contains("column blocks need span >= 0 and stride >= 0"));
}

TEST_CASE("gemm_nt_k_blocks: K in blocks of A and of B^T, on every ISA and thread count",
          "[gemm]") {
  // A convolution's weight gradient over a chunk of images: op(A)(i, k) at block k / span of A
  // (stride_a apart), row i at i * lda, offset k % span; op(B)(k, j) likewise in B^T. Spans of 1,
  // 4, 16, 49 and 196, K over several K blocks with blocks straddling them, padded rows, gaps,
  // a plain B (stride_b = span), beta = 1 (the gradient accumulates). NaN in gaps and padding.
  struct Blocked {
    Case c;
    int64_t span, pad, gap_a, gap_b;
    bool plain_b;
  };
  const std::vector<Blocked> cases = {
      {{32, 96, 16 * 40, false, true, 1.0f, 1.0f}, 16, 0, 0, 0, false},
      {{30, 27, 49 * 9, false, true, 1.0f, 1.0f}, 49, 0, 3, 5, true},
      {{64, 64, 4 * 100, false, true}, 4, 1, 0, 2, false},
      {{15, 40, 196 * 3, false, true, 0.5f, 0.25f}, 196, 2, 1, 0, false},
      {{9, 20, 77, false, true}, 1, 0, 2, 0, true},
      {{20, 33, 16 * 5 + 7, false, true, 1.0f, 1.0f}, 16, 0, 0, 0, false},
      // A first convolution's gradient: 9 columns (the dot path), its blocks copied together by
      // the threads, the plain B used as it is.
      {{64, 9, 196 * 20, false, true, 1.0f, 1.0f}, 196, 0, 4, 0, true},
  };
  Generator g(37);
  const int saved = omp_get_max_threads();
  for (const Blocked& t : cases) {
    const Case& c = t.c;
    Operands o(c, g);  // o.A (M, K) and o.B (N, K): the dense operands the blocks hold
    const int64_t blocks = (c.K + t.span - 1) / t.span;
    const int64_t lda = t.span + t.pad, stride_a = c.M * lda + t.gap_a;
    const int64_t ldb = t.plain_b ? o.ldb : t.span + t.pad;
    const int64_t stride_b = t.plain_b ? t.span : c.N * ldb + t.gap_b;
    std::vector<float> A(static_cast<size_t>(blocks * stride_a), kNaN);
    std::vector<float> B = t.plain_b ? o.B : std::vector<float>(size_t(blocks * stride_b), kNaN);
    for (int64_t k = 0; k < c.K; ++k) {
      for (int64_t i = 0; i < c.M; ++i)
        A[k / t.span * stride_a + i * lda + k % t.span] = o.a(c, i, k);
      if (t.plain_b) continue;
      for (int64_t j = 0; j < c.N; ++j)
        B[k / t.span * stride_b + j * ldb + k % t.span] = o.b(c, k, j);
    }
    for (GemmIsa isa : isas()) {
      IsaGuard guard(isa);
      for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        std::vector<float> C = o.C0;
        kernels::cpu::gemm_nt_k_blocks(c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta,
                                       C.data(), o.ldc, {t.span, stride_a, stride_b});
        INFO("span=" << t.span << " threads=" << threads);
        check_result(c, o, C.data());
      }
    }
  }
  omp_set_num_threads(saved);
  std::vector<float> A(16, 1.0f), B(16, 1.0f), C(16);
  REQUIRE_THROWS_WITH(kernels::cpu::gemm_nt_k_blocks(4, 4, 8, 1.0f, A.data(), 4, B.data(), 4, 0.0f,
                                                     C.data(), 4, {0, 8, 8}),
                      Catch::Contains("K blocks need span >= 1"));
  REQUIRE_THROWS_WITH(kernels::cpu::gemm_nt_k_blocks(4, 4, 8, 1.0f, A.data(), 2, B.data(), 4, 0.0f,
                                                     C.data(), 4, {4, 16, 16}),
                      Catch::Contains("too small"));
}

TEST_CASE("gemm_strided_batched: shared and strided operands, split over items or inside them",
          "[gemm]") {
  Generator g(14);
  struct Batched {
    Case c;
    int64_t batch;
    bool share_a;
  };
  // Many small items (spread over threads), few large ones (each split), a shared A (a weight
  // applied to every image), odd shapes, transposes.
  const std::vector<Batched> cases = {{{7, 9, 5, false, false}, 6, false},
                                      {{33, 17, 12, true, false, 1.0f, 1.0f}, 5, true},
                                      {{150, 160, 120, false, true}, 3, true},
                                      {{49, 49, 32, false, true, 0.25f}, 8, false},
                                      {{1, 1, 1, true, true}, 1, false}};
  for (const Batched& bc : cases) {
    const Case& c = bc.c;
    std::vector<Operands> items;
    for (int64_t b = 0; b < bc.batch; ++b) items.emplace_back(c, g);
    if (bc.share_a) {
      for (auto& it : items) it.A = items[0].A;
    }
    // Lay the items out with a gap between them (strides larger than one item).
    const int64_t sa = bc.share_a ? 0 : int64_t(items[0].A.size()) + 7;
    const int64_t sb = int64_t(items[0].B.size()) + 3, sc = int64_t(items[0].C.size()) + 5;
    std::vector<float> A(bc.share_a ? items[0].A.size() : size_t(sa * bc.batch), kNaN);
    std::vector<float> B(size_t(sb * bc.batch), kNaN), C(size_t(sc * bc.batch), kSentinel);
    for (int64_t b = 0; b < bc.batch; ++b) {
      std::copy(items[b].A.begin(), items[b].A.end(), A.begin() + b * sa);
      std::copy(items[b].B.begin(), items[b].B.end(), B.begin() + b * sb);
      std::copy(items[b].C.begin(), items[b].C.end(), C.begin() + b * sc);
    }
    const Operands& o = items[0];
    kernels::cpu::gemm_strided_batched(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), o.lda, sa,
                                       B.data(), o.ldb, sb, c.beta, C.data(), o.ldc, sc, bc.batch);
    for (int64_t b = 0; b < bc.batch; ++b) {
      INFO("batch item " << b << " of " << bc.batch);
      check_result(c, items[b], C.data() + b * sc);
      // The gap after each item's C is not written.
      for (int64_t q = int64_t(o.C.size()); q < sc; ++q) REQUIRE(C[b * sc + q] == kSentinel);
    }
  }
}

TEST_CASE("gemm_rows_b: rows read in place with lane masks", "[gemm]") {
  if (!kernels::cpu::gemm_rows_b_supported()) {
    WARN("no AVX-512: gemm_rows_b is not available, skipped");
    return;
  }
  Generator g(15);
  // B's rows are scattered runs of one source buffer, with lanes and whole rows masked off.
  for (int64_t M : {1, 13, 14, 15, 32, 45}) {
    for (int64_t n : {1, 7, 16, 17, 32}) {
      const int64_t K = 37, ldc = n + 3;
      std::vector<float> A(size_t(M * K)), src(4096), C(size_t(M * ldc), kSentinel), C0;
      for (float& v : A) v = g.uniform(-1, 1);
      for (float& v : src) v = g.uniform(-1, 1);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < n; ++j) C[i * ldc + j] = g.uniform(-1, 1);
      C0 = C;
      std::vector<const float*> rows(K);
      std::vector<uint32_t> masks(K);
      std::vector<int64_t> start(K);
      for (int64_t k = 0; k < K; ++k) {
        start[k] = g.randint(4096 - 64) + 16;
        const int64_t lo = g.randint(4), hi = n - g.randint(3);
        uint32_t m = 0;
        for (int64_t q = lo; q < hi; ++q) m |= 1u << q;
        masks[k] = k % 5 == 4 ? 0u : m;  // some rows entirely in the padding
        rows[k] = src.data() + start[k];
      }
      std::vector<float> packed(size_t(kernels::cpu::gemm_rows_b_packed_floats(M, K)));
      kernels::cpu::gemm_rows_b_pack(M, K, A.data(), K, packed.data());
      kernels::cpu::gemm_rows_b(M, K, n, 0.5f, packed.data(), rows.data(), masks.data(), 2.0f,
                                C.data(), ldc);
      for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < ldc; ++j) {
          INFO("M=" << M << " n=" << n << " C[" << i << ", " << j << "]");
          if (j >= n) {
            REQUIRE(C[i * ldc + j] == kSentinel);
            continue;
          }
          double dot = 0;
          for (int64_t k = 0; k < K; ++k) {
            if (masks[k] >> j & 1u) dot += double(A[i * K + k]) * src[start[k] + j];
          }
          REQUIRE(std::fabs(C[i * ldc + j] - (0.5 * dot + 2.0 * C0[i * ldc + j])) < 1e-5);
        }
      }
    }
  }
}

TEST_CASE("gemm: bad sizes and leading dimensions are refused", "[gemm]") {
  std::vector<float> A(16), B(16), C(16);
  REQUIRE_THROWS_WITH(
      kernels::cpu::gemm(false, false, 4, 4, 4, 1.0f, A.data(), 3, B.data(), 4, 0.0f, C.data(), 4),
      Catch::Contains("gemm: leading dimensions lda=3 ldb=4 ldc=4 too small for M=4 N=4 K=4"));
  REQUIRE_THROWS_WITH(
      kernels::cpu::gemm(true, true, 2, 4, 3, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(), 4),
      Catch::Contains("ldb=2"));
  REQUIRE_THROWS_WITH(
      kernels::cpu::gemm(false, false, -1, 4, 4, 1.0f, A.data(), 4, B.data(), 4, 0.0f, C.data(), 4),
      Catch::Contains("gemm: negative size M=-1"));
  REQUIRE_THROWS_WITH(
      kernels::cpu::gemm_strided_batched(false, false, 2, 2, 2, 1.0f, A.data(), 2, 4, B.data(), 2,
                                         4, 0.0f, C.data(), 2, 4, -2),
      Catch::Contains("negative batch -2"));
  if (!kernels::cpu::gemm_isa_runs_here(GemmIsa::kAvx512)) {
    REQUIRE_THROWS(kernels::cpu::set_gemm_isa(GemmIsa::kAvx512));
  }
}
