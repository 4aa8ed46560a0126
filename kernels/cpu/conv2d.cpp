// CPU conv2d: every pass is a matrix product per (chunk of output positions, group) on top of
// kernels::cpu::gemm.
//
// How data moves. For group g and a chunk of output positions, let col be the (Cin_g*kh*kw,
// width) matrix whose column q holds the input patch that output position q sees (im2col; zero
// where the patch hangs over the padding). Then
//
//   forward          y_g[:, chunk]   = W_g (Cout_g, Cin_g*kh*kw)  x  col
//   backward data    dcol            = W_g^T  x  dy_g[:, chunk],   then dx += col2im(dcol)
//   backward weight  dW_g           += dy_g[:, chunk]  x  col^T
//
// Forward convolutions at stride 1 or 2 with small groups (a multiple of 8 and at most 64
// (AVX-512) or 32 (AVX2) output channels per group: Next-ViT's MHCA, the stem's 64 -> 64 at
// stride 2) and more than 16 output positions take the direct kernel of
// kernels/cpu/conv_direct.cpp instead, on the AVX-512 and AVX2 families; what follows describes
// every other case.
//
// One-pixel maps (1 x 1 in and out: the last stage of a small model) take the matrix products
// of kernels/cpu/conv_one_pixel.cpp in every direction instead.
//
// A 1x1 kernel with stride 1 and no padding needs no im2col: col is the input itself, read in
// place with leading dimension H*W (and dx is written in place the same way). With stride 1 the
// input gradient is computed as the forward convolution of dy with the flipped kernel instead
// of through col2im (see conv2d_backward_data).
//
// Chunks. The im2col buffer is bounded (kColFloats) so it stays in L2 between being written and
// being packed by the GEMM: a large image is cut into column ranges of one image. Small images
// (late stages, or the small inputs of CPU training) are instead grouped several whole images to
// a chunk, so that each GEMM still sees hundreds of columns; their number is a multiple of the
// thread count and their sizes equal, so that every thread gets the same work. Such a chunk is
// not copied together here: the GEMM's packers read its images' planes where they lie (column
// blocks of one image's span: GemmColumnBlocks; in the weight gradient, where the images are
// summed over, K in blocks: gemm_nt_k_blocks, which copies blocks of 2 x 2 images together
// itself), and the product is scattered into the images by
// the GEMM's row pass as it finishes each run of a row (gemm_scattered). Narrow images build
// their im2col through zero-padded copies (14 x 14, stride 1) or through a table of input
// offsets and masked gathers (7 x 7 and below; with AVX-512, images of at most 16 pixels by
// one vector permutation per channel and kernel offset) rather than row by row.
//
// Threads. The (chunk, group) items are spread over the OpenMP threads when there are enough of
// them to keep every thread busy; each item then runs its products on its own thread (the GEMM
// sees omp_in_parallel() and stays single-threaded). With few items (batch 1, one group) the
// items run in turn and each GEMM, im2col and col2im is split across the threads instead. Never
// both. The weight gradient sums over items: in the threaded form each thread accumulates into
// a private copy, added up at the end.
#include "kernels/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/conv_one_pixel.h"
#include "kernels/cpu/conv_output_pass.h"
#include "kernels/cpu/copy_floats.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/lane_sums.h"
#include "kernels/cpu/parallel.h"
#if NEXTVIT_CPU_X86
#include <immintrin.h>
#endif
#include "kernels/gemm.h"

namespace nextvit::kernels::cpu {
namespace {

// Floats of im2col buffer per chunk (512 KiB: a quarter of this machine's L2).
constexpr int64_t kColFloats = 128 * 1024;
// Chunk widths: never below one micro-tile row of work, never beyond what helps.
constexpr int64_t kMinCols = 64, kMaxCols = 4096;
// An image with at least this many output positions gets chunks of its own (read in place);
// smaller ones are grouped with their neighbours.
constexpr int64_t kInPlaceCols = 256;
// Rows of im2col / col2im below which splitting them across threads does not pay.
constexpr int64_t kRowGrain = 16;

// Derived sizes of a Conv2dShape.
struct Geometry {
  explicit Geometry(const Conv2dShape& s)
      : s(s),
        cin_g(s.in_channels / s.groups),
        cout_g(s.out_channels / s.groups),
        kg(cin_g * s.kernel_h * s.kernel_w),
        hw(s.in_h * s.in_w),
        ho(s.out_h()),
        wo(s.out_w()),
        p(ho * wo),
        pointwise(s.pointwise()) {}
  const Conv2dShape& s;
  int64_t cin_g, cout_g, kg, hw, ho, wo, p;
  bool pointwise;
};

// Output positions [p0, p1) of each of the images [n0, n0 + images); either one image and any
// column range, or several whole images (p0 = 0, p1 = P).
struct Chunk {
  int64_t n0, images, p0, p1;
  int64_t span() const { return p1 - p0; }
  int64_t width() const { return images * span(); }
  bool in_place() const { return images == 1; }
};

int available_threads() {
  return omp_in_parallel() ? 1 : omp_get_max_threads();
}

std::vector<Chunk> plan_chunks(const Geometry& g) {
  const int64_t P = g.p, N = g.s.batch;
  // Columns per chunk: as many as the im2col budget allows. A 1x1 kernel reads a
  // large image in place, with nothing to bound: one chunk per image.
  const int64_t budget = kColFloats / g.kg / 16 * 16;
  const int64_t target = g.pointwise ? std::max(P, std::clamp(budget, kInPlaceCols, kMaxCols))
                                     : std::clamp(budget, kMinCols, kMaxCols);
  std::vector<Chunk> chunks;
  if (P >= std::min(target, kInPlaceCols) || N == 1) {
    const int64_t pieces = (P + target - 1) / target;
    const int64_t step = std::min(P, ((P + pieces - 1) / pieces + 15) / 16 * 16);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t p0 = 0; p0 < P; p0 += step) chunks.push_back({n, 1, p0, std::min(P, p0 + step)});
    }
  } else {
    // As few chunks as the budget allows, all of nearly the same size and, when there are
    // several, a multiple of the thread count: 128 images of 7 x 7 at 41 per chunk would be
    // 41 + 41 + 41 + 5, and the thread taking the first and third would work 82 images to the
    // other's 46. A single chunk stays one: its GEMM splits across the threads itself (two
    // chunks would each pack the whole weight).
    const int64_t per = std::max<int64_t>(1, target / P), threads = available_threads();
    int64_t count = (N + per - 1) / per;
    if (count > 1 && threads > 1 && N >= threads) {
      count = (count + threads - 1) / threads * threads;
    }
    for (int64_t i = 0; i < count; ++i) {
      const int64_t n0 = N * i / count, n1 = N * (i + 1) / count;
      chunks.push_back({n0, n1 - n0, 0, P});
    }
  }
  return chunks;
}

// Whether to spread `items` equal-sized items over the threads (true) or run them in turn with
// each one's work split (false).
bool spread_items(int64_t items) {
  const int t = available_threads();
  return t > 1 && items >= t && (items % t == 0 || items >= 3 * t);
}

// Static round-robin (item i on thread i mod T), never dynamic: the weight gradient sums each
// thread's items into that thread's partial buffer, so the item-to-thread assignment must not
// depend on timing, or results would differ from run to run in the last bits (and a resumed
// training run would not reproduce an uninterrupted one).
template <typename F>
void for_items(int64_t items, bool spread, const F& f) {
  if (spread) {
#pragma omp parallel for schedule(static, 1) num_threads(available_threads())
    for (int64_t i = 0; i < items; ++i) f(i);
  } else {
    for (int64_t i = 0; i < items; ++i) f(i);
  }
}

// Per-thread scratch buffers, grown on demand and kept (OpenMP keeps its threads).
float* scratch(int slot, int64_t floats) {
  thread_local std::vector<float> buffers[3];
  std::vector<float>& b = buffers[slot];
  if (static_cast<int64_t>(b.size()) < floats) b.resize(static_cast<size_t>(floats));
  return b.data();
}

// For kernel column j, the output columns ow whose input column iw = ow * sw - pw + j lies
// inside the image: [lo, hi). The same for every output row, so computed once per kernel row.
struct ValidColumns {
  int64_t lo, hi;
};
ValidColumns valid_columns(const Geometry& g, int64_t j) {
  const Conv2dShape& s = g.s;
  const int64_t off = j - s.pad_w;  // iw = ow * sw + off
  // Smallest ow with ow * sw + off >= 0, and one past the largest with ow * sw + off < W.
  const int64_t lo = off >= 0 ? 0 : (-off + s.stride_w - 1) / s.stride_w;
  const int64_t hi = s.in_w - off <= 0 ? 0 : (s.in_w - off - 1) / s.stride_w + 1;
  return {std::min(lo, g.wo), std::clamp(hi, std::min(lo, g.wo), g.wo)};
}

// Walks output positions [p0, p1) one output row at a time: f(oh, ow0, ow1, q) for the run
// of columns [ow0, ow1) of row oh, whose first position is the q-th of the range.
template <typename F>
inline void for_row_runs(const Geometry& g, int64_t p0, int64_t p1, const F& f) {
  for (int64_t p = p0; p < p1;) {
    const int64_t oh = p / g.wo, ow0 = p % g.wo, ow1 = std::min(g.wo, ow0 + (p1 - p));
    f(oh, ow0, ow1, p - p0);
    p += ow1 - ow0;
  }
}

// Output rows narrower than this are walked through an index table rather than run by run:
// at 7 x 7 the per-run bookkeeping would cost more than the copying.
constexpr int64_t kNarrowRows = 24;

// For each kernel offset (i, j) and each position q of `images` images' ranges [p0, p1), side
// by side: the offset k * image_stride + ih * W + iw of the input element that position reads
// (k the image), or -1 in the padding. Shared by all channels.
// The table of the previous call is kept with what it depends on: col2im asks for the same one
// for every image of a chunk, im2col for every chunk of a convolution (equal chunks).
struct TableKey {
  int64_t v[13];
  bool operator==(const TableKey& o) const { return std::equal(v, v + 13, o.v); }
};

const int32_t* offset_table(const Geometry& g, int64_t images, int64_t image_stride, int64_t p0,
                            int64_t p1) {
  thread_local std::vector<int32_t> table;
  thread_local TableKey built{};
  const Conv2dShape& s = g.s;
  const TableKey key{{s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.in_h,
                      s.in_w, g.wo, images, image_stride, p0, p1}};
  if (key == built && !table.empty()) return table.data();
  built = key;
  const int64_t span = p1 - p0, width = images * span;
  table.resize(static_cast<size_t>(s.kernel_h * s.kernel_w * width));
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      int32_t* t = table.data() + (i * s.kernel_w + j) * width;
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t ih = p / g.wo * s.stride_h - s.pad_h + i;
        const int64_t iw = p % g.wo * s.stride_w - s.pad_w + j;
        const bool inside = ih >= 0 && ih < s.in_h && iw >= 0 && iw < s.in_w;
        for (int64_t k = 0; k < images; ++k) {
          t[k * span + p - p0] =
              inside ? static_cast<int32_t>(k * image_stride + ih * s.in_w + iw) : -1;
        }
      }
    }
  }
  return table.data();
}

// Whether the offset table serves: narrow output rows, offsets within int32.
bool use_table(const Geometry& g, int64_t images, int64_t image_stride) {
  return g.wo < kNarrowRows && images * image_stride < (int64_t{1} << 31);
}

// ---- im2col through zero-padded images (narrow rows) -----------------------------------------
// At 14 x 14 and below an output row is a run of a few floats, and the masked gathers of the
// offset table (or the bounds checks of the run-by-run walk) cost more than the copying. The
// chunk's images are instead first copied into zero-padded planes xp[k][c] (Hp x Wp), 1/(kh*kw)
// of the col's size; with stride 1, col row (c, i, j) at position (oh, ow) of image k is then
//   xp[k][c][(oh + i) * Wp + ow + j]
// so each output row's run is a plain vector copy, without bounds checks. Measured (one thread,
// the 3x3 convolutions of CPU training): 5-10% faster forward and weight gradient at 14 x 14,
// but slower than the gathers at 7 x 7 and below, and with stride 2 (strided copies).
constexpr int64_t kPaddedMinRows = 12;

bool use_padded(const Geometry& g) {
  return g.s.stride_h == 1 && g.s.stride_w == 1 && g.wo >= kPaddedMinRows && g.wo < kNarrowRows;
}

// The padded images, planes of Hp x Wp floats, then 8 floats of zeros (vector over-reads): all
// zeroed at once, then the image rows copied in.
const float* pad_images(const Geometry& g, const float* x, int64_t images, int64_t image_stride,
                        int64_t hp, int64_t wp) {
  const Conv2dShape& s = g.s;
  const int64_t plane = hp * wp, planes = images * g.cin_g;
  float* xp = scratch(2, planes * plane + 8);
  std::fill(xp, xp + planes * plane + 8, 0.0f);
  parallel_for(planes, kRowGrain, [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const float* src = x + pl / g.cin_g * image_stride + pl % g.cin_g * g.hw;
      float* d = xp + pl * plane + s.pad_h * wp + s.pad_w;
      for (int64_t ih = 0; ih < s.in_h; ++ih) copy_floats(src + ih * s.in_w, d + ih * wp, s.in_w);
    }
  });
  return xp;
}

// One output row of one image: `len` positions from col column `dst`, read from padded offset
// `src` (channel 0, kernel offset (0, 0)). `overrun`: at least 8 more columns of the col row
// follow, so the copy may write up to 7 floats past its end (later runs overwrite them).
struct PaddedRun {
  int64_t src, dst, len;
  bool overrun;
};

// d[0, n) = s[0, n), in 8-float vectors; with `overrun` the last vector is a whole one.
inline void copy_run(const float* s, float* d, int64_t n, bool overrun) {
  int64_t q = 0;
#if NEXTVIT_CPU_X86
  for (; q + 8 <= n; q += 8) _mm256_storeu_ps(d + q, _mm256_loadu_ps(s + q));
  if (overrun && q < n) {
    _mm256_storeu_ps(d + q, _mm256_loadu_ps(s + q));
    return;
  }
#else
  (void)overrun;
#endif
  for (; q < n; ++q) d[q] = s[q];
}

void im2col_padded(const Geometry& g, const float* x, int64_t images, int64_t image_stride,
                   int64_t p0, int64_t p1, float* dst, int64_t ld) {
  const Conv2dShape& s = g.s;
  const int64_t kh = s.kernel_h, kw = s.kernel_w;
  const int64_t hp = s.in_h + 2 * s.pad_h, wp = s.in_w + 2 * s.pad_w, plane = hp * wp;
  const int64_t span = p1 - p0, width = images * span;
  const float* xp = pad_images(g, x, images, image_stride, hp, wp);
  thread_local std::vector<PaddedRun> run_list;
  run_list.clear();
  for (int64_t k = 0; k < images; ++k) {
    for_row_runs(g, p0, p1, [&](int64_t oh, int64_t ow0, int64_t ow1, int64_t q) {
      const int64_t d = k * span + q, len = ow1 - ow0;
      run_list.push_back({k * g.cin_g * plane + oh * wp + ow0, d, len, width - (d + len) >= 8});
    });
  }
  // Named through locals: a thread_local named inside the lambda would be each worker's own.
  const PaddedRun* runs = run_list.data();
  const int64_t nruns = static_cast<int64_t>(run_list.size());
  parallel_for(g.kg, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t c = row / (kh * kw), i = row / kw % kh, j = row % kw;
      const float* base = xp + c * plane + i * wp + j;
      float* d = dst + row * ld;
      for (int64_t r = 0; r < nruns; ++r) {
        copy_run(base + runs[r].src, d + runs[r].dst, runs[r].len, runs[r].overrun);
      }
    }
  });
}

// ---- im2col of tiny images (AVX-512) ----------------------------------------------------------
// An image of at most 16 pixels giving at most 16 outputs (4 x 4 and below: MHCA's maps in the
// last stages of CPU training) is one vector register. Row (c, i, j) of its im2col is then one
// permutation of that vector, lane q taking the input pixel that output q reads through kernel
// offset (i, j), with the lanes that read the padding zeroed (vpermps under a zeroing mask); it
// is stored as the image's run of P columns (a masked store). The offset table's gathers took
// half of such a convolution's time (1.3 ms for 128 images of 128 channels at 4 x 4): on AMD's
// Zen a gather moves about one float per cycle, a permutation sixteen.
bool use_tiny_images(const Geometry& g) {
  return g.hw <= 16 && g.p <= 16 && gemm_isa() == GemmIsa::kAvx512;
}

// Rows of channels [c0, c1) of `images` tiny images; source[t * 16 + q] is the pixel that output
// q reads through kernel offset t, bit q of inside[t] whether it lies inside the image.
#if NEXTVIT_CPU_X86
__attribute__((target("avx512f"))) void im2col_tiny_channels(
    const Geometry& g, const int32_t* source, const uint16_t* inside, const float* x,
    int64_t images, int64_t image_stride, float* dst, int64_t ld, int64_t c0, int64_t c1) {
  const int64_t taps = g.s.kernel_h * g.s.kernel_w;
  const __mmask16 pixels = static_cast<__mmask16>((1u << g.hw) - 1);
  const __mmask16 outputs = static_cast<__mmask16>((1u << g.p) - 1);
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t k = 0; k < images; ++k) {
      const __m512 v = _mm512_maskz_loadu_ps(pixels, x + k * image_stride + c * g.hw);
      for (int64_t t = 0; t < taps; ++t) {
        const __m512i from = _mm512_loadu_si512(source + t * 16);
        _mm512_mask_storeu_ps(dst + (c * taps + t) * ld + k * g.p, outputs,
                              _mm512_maskz_permutexvar_ps(inside[t], from, v));
      }
    }
  }
}
#else
void im2col_tiny_channels(const Geometry&, const int32_t*, const uint16_t*, const float*, int64_t,
                          int64_t, float*, int64_t, int64_t, int64_t) {
  NV_FAIL("im2col_tiny: needs AVX-512 (x86-64 only)");
}
#endif

void im2col_tiny(const Geometry& g, const float* x, int64_t images, int64_t image_stride,
                 float* dst, int64_t ld) {
  const Conv2dShape& s = g.s;
  const int64_t taps = s.kernel_h * s.kernel_w;
  std::vector<int32_t> source(static_cast<size_t>(taps * 16), 0);
  std::vector<uint16_t> inside(static_cast<size_t>(taps), 0);
  for (int64_t t = 0; t < taps; ++t) {
    for (int64_t q = 0; q < g.p; ++q) {
      const int64_t ih = q / g.wo * s.stride_h - s.pad_h + t / s.kernel_w;
      const int64_t iw = q % g.wo * s.stride_w - s.pad_w + t % s.kernel_w;
      if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) continue;
      source[size_t(t * 16 + q)] = static_cast<int32_t>(ih * s.in_w + iw);
      inside[size_t(t)] = static_cast<uint16_t>(inside[size_t(t)] | (1u << q));
    }
  }
  parallel_for(g.cin_g, kRowGrain, [&](int64_t c0, int64_t c1) {
    im2col_tiny_channels(g, source.data(), inside.data(), x, images, image_stride, dst, ld, c0, c1);
  });
}

// col rows (c, i, j) x positions [p0, p1) of `images` images (image_stride floats apart), side
// by side: row (c * kh + i) * kw + j of dst (leading dimension ld) gets x_c[oh * sh - ph + i,
// ow * sw - pw + j] (0 outside the image) for each position p = oh * Wo + ow. x points at the
// group's first channel of the first image. Plain loops rather than memcpy/fill calls, and for
// narrow images one offset table for all images of the chunk (at 2 x 2 a run is 2 floats long).
void im2col(const Geometry& g, const float* x, int64_t images, int64_t image_stride, int64_t p0,
            int64_t p1, float* dst, int64_t ld) {
  const Conv2dShape& s = g.s;
  const int64_t kh = s.kernel_h, kw = s.kernel_w, sw = s.stride_w, span = p1 - p0;
  if (p0 == 0 && p1 == g.p && use_tiny_images(g)) {
    im2col_tiny(g, x, images, image_stride, dst, ld);
    return;
  }
  if (use_padded(g)) {
    im2col_padded(g, x, images, image_stride, p0, p1, dst, ld);
    return;
  }
  if (use_table(g, images, image_stride)) {
    const int32_t* table = offset_table(g, images, image_stride, p0, p1);
    const int64_t width = images * span;
    parallel_for(g.kg, kRowGrain, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const int32_t* t = table + row % (kh * kw) * width;
        const float* xc = x + row / (kh * kw) * g.hw;
        float* d = dst + row * ld;
        // Eight positions per masked gather; padding lanes are masked off (never read, 0).
        int64_t q = 0;
#if NEXTVIT_CPU_X86
        for (; q + 8 <= width; q += 8) {
          const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + q));
          const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(-1)));
          _mm256_storeu_ps(d + q, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xc, idx, valid, 4));
        }
#endif
        for (; q < width; ++q) d[q] = t[q] >= 0 ? xc[t[q]] : 0.0f;
      }
    });
    return;
  }
  parallel_for(g.kg, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t c = row / (kh * kw), i = row / kw % kh, j = row % kw;
      const ValidColumns v = valid_columns(g, j);
      const int64_t off = j - s.pad_w;
      for (int64_t k = 0; k < images; ++k) {
        const float* xc = x + k * image_stride + c * g.hw;
        float* d = dst + row * ld + k * span;
        for_row_runs(g, p0, p1, [&](int64_t oh, int64_t ow0, int64_t ow1, int64_t q) {
          float* out = d + q - ow0;  // out[ow] is position (oh, ow)
          const int64_t ih = oh * s.stride_h - s.pad_h + i;
          if (ih < 0 || ih >= s.in_h) {
            for (int64_t ow = ow0; ow < ow1; ++ow) out[ow] = 0.0f;
            return;
          }
          const int64_t lo = std::clamp(v.lo, ow0, ow1), hi = std::clamp(v.hi, lo, ow1);
          const float* xr = xc + ih * s.in_w + off;  // xr[ow * sw] is input column iw
          for (int64_t ow = ow0; ow < lo; ++ow) out[ow] = 0.0f;
          if (sw == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] = xr[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] = xr[ow * sw];
          }
          for (int64_t ow = hi; ow < ow1; ++ow) out[ow] = 0.0f;
        });
      }
    }
  });
}

// The adjoint of im2col: dx_c[ih, iw] += src[row][p - p0] for every (row, p) im2col would have
// read from (ih, iw). Split by channel: all rows of one channel land in that channel only.
void col2im(const Geometry& g, const float* src, int64_t ld, int64_t p0, int64_t p1, float* dx) {
  const Conv2dShape& s = g.s;
  const int64_t kh = s.kernel_h, kw = s.kernel_w, sw = s.stride_w;
  if (use_table(g, 1, 0)) {
    const int32_t* table = offset_table(g, 1, 0, p0, p1);
    const int64_t span = p1 - p0;
    parallel_for(g.cin_g, std::max<int64_t>(1, kRowGrain / (kh * kw)), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        float* dc = dx + c * g.hw;
        for (int64_t k = 0; k < kh * kw; ++k) {
          const int32_t* t = table + k * span;
          const float* in = src + (c * kh * kw + k) * ld;
          for (int64_t q = 0; q < span; ++q) {
            if (t[q] >= 0) dc[t[q]] += in[q];
          }
        }
      }
    });
    return;
  }
  parallel_for(g.cin_g, std::max<int64_t>(1, kRowGrain / (kh * kw)), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      float* dc = dx + c * g.hw;
      for (int64_t i = 0; i < kh; ++i) {
        for (int64_t j = 0; j < kw; ++j) {
          const ValidColumns v = valid_columns(g, j);
          const int64_t off = j - s.pad_w;
          const float* srow = src + ((c * kh + i) * kw + j) * ld;
          for_row_runs(g, p0, p1, [&](int64_t oh, int64_t ow0, int64_t ow1, int64_t q) {
            const int64_t ih = oh * s.stride_h - s.pad_h + i;
            if (ih < 0 || ih >= s.in_h) return;
            const int64_t lo = std::clamp(v.lo, ow0, ow1), hi = std::clamp(v.hi, lo, ow1);
            const float* in = srow + q - ow0;
            float* dr = dc + ih * s.in_w + off;
            if (sw == 1) {
              for (int64_t ow = lo; ow < hi; ++ow) dr[ow] += in[ow];
            } else {
              for (int64_t ow = lo; ow < hi; ++ow) dr[ow * sw] += in[ow];
            }
          });
        }
      }
    }
  });
}

// The im2col matrix of a chunk for group grp: (kg, width), images side by side.
void build_col(const Geometry& g, const float* x, int64_t grp, const Chunk& ch, float* col) {
  const int64_t cin = g.s.in_channels;
  im2col(g, x + (ch.n0 * cin + grp * g.cin_g) * g.hw, ch.images, cin * g.hw, ch.p0, ch.p1, col,
         ch.width());
}

// The product of a chunk of several images, scattered: buf (rows, width) = op(a) x b, and each
// run of a row, once the GEMM has finished it and while it is in L1, put through the output
// pass into the images' planes of t (channels c0 + row). A scatter after the product would read
// all of buf again, from L2, in a parallel pass of its own: in CPU training (batch 128, maps of
// 14 x 14 and below) the separate gather and scatter passes took 15 % of the step.
void gemm_scattered(const Geometry& g, const Chunk& ch, bool trans_a, int64_t rows, int64_t K,
                    const float* a, int64_t lda, const float* b, int64_t ldb,
                    const GemmRowAffine& b_map, const GemmColumnBlocks& b_blocks, int64_t channels,
                    int64_t c0, const ConvOutputPass& pass, float* buf, float* t) {
  struct Target {
    const Geometry* g;
    const Chunk* ch;
    const ConvOutputPass* pass;
    const float* buf;
    float* t;
    int64_t channels, c0, width;
  } target{&g, &ch, &pass, buf, t, channels, c0, ch.width()};
  GemmRowPass row_pass;
  row_pass.ctx = &target;
  row_pass.fn = [](const void* ctx, int64_t row, float* c, int64_t n) {
    const Target& s = *static_cast<const Target*>(ctx);
    const int64_t span = s.ch->span(), image = s.channels * s.g->p;
    // Column j of buf is position p0 + j % span of image n0 + j / span: the run's first image
    // and offset, then whole images from offset 0.
    const int64_t j = (c - s.buf) - row * s.width;
    int64_t q = j % span;
    float* dst = s.t + ((s.ch->n0 + j / span) * s.channels + s.c0 + row) * s.g->p + s.ch->p0;
    for (const float* end = c + n; c < end; dst += image, q = 0) {
      const int64_t len = std::min(span - q, int64_t(end - c));
      s.pass->run(s.c0 + row, c, dst + q, len);
      c += len;
    }
  };
  gemm_with_pass(trans_a, false, rows, ch.width(), K, 1.0f, a, lda, b, ldb, 0.0f, buf, ch.width(),
                 row_pass, b_map, b_blocks);
}

// Rows [c0, c0 + rows) of a chunk of an (N, C, P) tensor as the right-hand matrix of a product,
// read where they lie: in place for one image (leading dimension P), else as column blocks of
// one image's span each (GemmColumnBlocks), C * P floats apart. *ld and *blocks describe it.
const float* chunk_matrix(const Geometry& g, const float* t, int64_t channels, int64_t c0,
                          const Chunk& ch, int64_t* ld, GemmColumnBlocks* blocks) {
  *ld = g.p;
  *blocks = ch.in_place() ? GemmColumnBlocks{} : GemmColumnBlocks{ch.span(), channels * g.p};
  return t + (ch.n0 * channels + c0) * g.p + ch.p0;
}

// y (rows, ld) = w (rows, K) x b (K, cols), output channels [c0, c0 + rows), each run of a row
// put through the output pass by the GEMM as soon as it is complete, while it is in cache. (A
// pass after the product would read and write all of y again, from memory: 3.6 MB for the
// 96 -> 288 1x1 convolution at 56 x 56.)
void gemm_finished(const ConvOutputPass& pass, int64_t c0, int64_t rows, int64_t cols, int64_t K,
                   const float* w, const float* b, int64_t ldb, float* y, int64_t ld,
                   const GemmRowAffine& b_map) {
  struct Channels {
    const ConvOutputPass* pass;
    int64_t c0;
  } channels{&pass, c0};
  GemmRowPass row_pass;
  if (pass.needed()) {
    row_pass.fn = [](const void* ctx, int64_t row, float* c, int64_t n) {
      const Channels& ch = *static_cast<const Channels*>(ctx);
      ch.pass->run(ch.c0 + row, c, c, n);
    };
    row_pass.ctx = &channels;
  }
  gemm_with_pass(false, false, rows, cols, K, 1.0f, w, K, b, ldb, 0.0f, y, ld, row_pass, b_map);
}

// dw = sum over (chunk, group) items of dy_g[:, chunk] x col^T.
void weight_gradient(const Geometry& g, const float* x, const float* dy, float* dw) {
  const Conv2dShape& s = g.s;
  const std::vector<Chunk> chunks = plan_chunks(g);
  const int64_t G = s.groups, cin = s.in_channels, cout = s.out_channels;
  const int64_t items = int64_t(chunks.size()) * G, dw_size = cout * g.kg;
  const bool spread = spread_items(items);
  // In the threaded form thread t accumulates into partial[t] (thread 0 into dw itself).
  const int threads = spread ? available_threads() : 1;
  std::vector<float> partial(static_cast<size_t>((threads - 1) * dw_size), 0.0f);
  std::fill(dw, dw + dw_size, 0.0f);

  for_items(items, spread, [&](int64_t item) {
    const Chunk& ch = chunks[item / G];
    const int64_t grp = item % G, width = ch.width();
    const int t = spread ? omp_get_thread_num() : 0;
    float* acc = (t == 0 ? dw : partial.data() + (t - 1) * dw_size) + grp * g.cout_g * g.kg;
    // dy chunk (cout_g, width) and col chunk (kg, width), used transposed: for a 1x1 kernel the
    // input itself, read where it lies; else im2col.
    GemmColumnBlocks dy_blocks, x_blocks;
    int64_t lddy, ldcol;
    const float* dym = chunk_matrix(g, dy, cout, grp * g.cout_g, ch, &lddy, &dy_blocks);
    const float* colm;
    if (g.pointwise) {
      colm = chunk_matrix(g, x, cin, grp * g.cin_g, ch, &ldcol, &x_blocks);
    } else {
      float* col = scratch(0, g.kg * width);
      build_col(g, x, grp, ch, col);
      colm = col;
      ldcol = width;
      x_blocks = {ch.span(), ch.span()};  // contiguous: block b starts b spans on
    }
    if (ch.in_place()) {
      gemm(false, true, g.cout_g, g.kg, width, 1.0f, dym, lddy, colm, ldcol, 1.0f, acc, g.kg);
    } else {
      // Summed over the chunk's images, K in blocks of one image's span.
      gemm_nt_k_blocks(g.cout_g, g.kg, width, 1.0f, dym, lddy, colm, ldcol, 1.0f, acc, g.kg,
                       {ch.span(), dy_blocks.stride, x_blocks.stride});
    }
  });
  for (int t = 1; t < threads; ++t) {
    const float* p = partial.data() + (t - 1) * dw_size;
    parallel_for(dw_size, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) dw[i] += p[i];
    });
  }
}

void bias_gradient(const Geometry& g, const float* dy, float* db) {
  const Conv2dShape& s = g.s;
  const int64_t cout = s.out_channels;
  // db[c] = sum over images and positions of dy[n, c, :], in double lanes kept across the
  // images (lane_sums.h), so that small maps (7x7, 4x4) need no reduction per image.
  parallel_for(cout, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      LaneSums2 acc;
      for (int64_t n = 0; n < s.batch; ++n) {
        const float* row = dy + (n * cout + c) * g.p;
        acc.add_run(g.p, [&](int64_t q, double& u, double& v) {
          u = row[q];
          v = 0.0;
        });
      }
      const double total = acc.sum_a();
      db[c] = static_cast<float>(total);
    }
  });
}

// ---- implicit GEMM: stride 1, wide output rows ----------------------------------------------
// For a stride-1 convolution, row k = (c, i, j) of col restricted to one output row oh and the
// columns [ow0, ow0 + 32) is a run of input row ih = oh + i - ph of channel c, starting at
// column ow0 + j - pw: it can be read where it lies. gemm_rows_b takes one pointer (and a lane
// mask for the padding) per k, so the forward needs no im2col copy at all: per (image, group)
// the weights are packed once, then each 32-wide piece of an output row is one call.

// Output rows at least this wide (a 28-wide row fills 28 of the 32 lanes) and col heights up
// to this (one packed weight panel of 14 x kg floats stays in L1) take the implicit path.
constexpr int64_t kImplicitMinWidth = 28, kImplicitMaxK = 1152;
// Kernel widths the implicit path handles (a per-column mask table lives on the stack).
constexpr int64_t kMaxKernelW = 16;

bool use_implicit(const Geometry& g) {
  const Conv2dShape& s = g.s;
  return !g.pointwise && s.stride_h == 1 && s.stride_w == 1 && g.wo >= kImplicitMinWidth &&
         g.kg <= kImplicitMaxK && s.kernel_w <= kMaxKernelW && gemm_rows_b_supported();
}

// Bits [lo, hi) of a 32-bit lane mask (0 when hi <= lo).
inline uint32_t lane_bits(int64_t lo, int64_t hi) {
  if (hi <= lo) return 0;
  const uint32_t below_hi = hi >= 32 ? ~0u : (1u << hi) - 1;
  return below_hi & ~((1u << lo) - 1);
}

void forward_implicit(const Geometry& g, const float* x, const float* w, const ConvOutputPass& pass,
                      float* y) {
  const Conv2dShape& s = g.s;
  const int64_t G = s.groups, N = s.batch, kh = s.kernel_h, kw = s.kernel_w;
  const int threads = available_threads();
  // Items: (image, group, block of output rows), at least four per thread when possible.
  const int64_t blocks = std::clamp<int64_t>((4 * threads + N * G - 1) / (N * G), 1, g.ho);
  const int64_t rows_per = (g.ho + blocks - 1) / blocks, nblocks = (g.ho + rows_per - 1) / rows_per;
  const int64_t items = N * G * nblocks;
  // Rows of B in the padding are never read (mask 0), but get a valid address anyway.
  static const float kZeroRow[kGemmRowsMaxN] = {};
  for_items(items, threads > 1 && items >= threads, [&](int64_t item) {
    const int64_t blk = item % nblocks, grp = item / nblocks % G, n = item / nblocks / G;
    float* packed = scratch(0, gemm_rows_b_packed_floats(g.cout_g, g.kg));
    gemm_rows_b_pack(g.cout_g, g.kg, w + grp * g.cout_g * g.kg, g.kg, packed);
    thread_local std::vector<const float*> rows;
    thread_local std::vector<uint32_t> masks;
    rows.resize(static_cast<size_t>(g.kg));
    masks.resize(static_cast<size_t>(g.kg));
    const float* xg = x + (n * s.in_channels + grp * g.cin_g) * g.hw;
    float* yg = y + (n * s.out_channels + grp * g.cout_g) * g.p;
    const int64_t oh0 = blk * rows_per, oh1 = std::min(g.ho, oh0 + rows_per);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      for (int64_t ow0 = 0; ow0 < g.wo; ow0 += kGemmRowsMaxN) {
        const int64_t cols = std::min(kGemmRowsMaxN, g.wo - ow0);
        // Lanes of kernel column j inside the image: the same for every channel and kernel row.
        uint32_t col_mask[kMaxKernelW];
        for (int64_t j = 0; j < kw; ++j) {
          const int64_t start = ow0 + j - s.pad_w;  // input column read by lane 0
          col_mask[j] = lane_bits(std::max<int64_t>(0, -start), std::min(cols, s.in_w - start));
        }
        int64_t k = 0;
        for (int64_t c = 0; c < g.cin_g; ++c) {
          for (int64_t i = 0; i < kh; ++i) {
            const int64_t ih = oh + i - s.pad_h;
            const bool inside = ih >= 0 && ih < s.in_h;
            // Address of input column 0 of row ih, as an integer: lane 0 of a row may lie left
            // of it (then masked off), and that address must not be formed as a pointer.
            const uintptr_t row = reinterpret_cast<uintptr_t>(xg + c * g.hw) +
                                  static_cast<uintptr_t>(ih * s.in_w * int64_t(sizeof(float)));
            for (int64_t j = 0; j < kw; ++j, ++k) {
              const uint32_t m = inside ? col_mask[j] : 0u;
              masks[k] = m;
              rows[k] = m == 0 ? kZeroRow
                               : reinterpret_cast<const float*>(
                                     row + static_cast<uintptr_t>((ow0 + j - s.pad_w) *
                                                                  int64_t(sizeof(float))));
            }
          }
        }
        gemm_rows_b(g.cout_g, g.kg, cols, 1.0f, packed, rows.data(), masks.data(), 0.0f,
                    yg + oh * g.wo + ow0, g.p);
      }
    }
    if (pass.needed()) {
      for (int64_t co = 0; co < g.cout_g; ++co) {
        float* run = yg + co * g.p + oh0 * g.wo;
        pass.run(grp * g.cout_g + co, run, run, (oh1 - oh0) * g.wo);
      }
    }
  });
}

}  // namespace

void conv2d_workspace_floats(const Conv2dShape&, int64_t* floats) {
  *floats = 0;
}

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
                    float* /*workspace*/) {
  conv2d_forward_fused(s, x, w, b, Conv2dEpilogue{}, y);
}

void conv2d_forward_fused(const Conv2dShape& s, const float* x, const float* w, const float* b,
                          const Conv2dEpilogue& epilogue, float* y,
                          const Conv2dPrologue& prologue) {
  const Geometry g(s);
  const ConvOutputPass pass(b, epilogue, y);
  NV_CHECK((prologue.scale == nullptr) == (prologue.shift == nullptr),
           "conv2d_forward_fused: the input map needs both scale and shift, or neither");
  NV_CHECK(prologue.scale == nullptr || g.pointwise,
           "conv2d_forward_fused: an input map needs a 1x1 convolution with stride 1 and no "
           "padding, got kernel {}x{}, stride {}x{}, padding {}x{}",
           s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.pad_h, s.pad_w);
  if (conv_one_pixel_applies(s) && prologue.scale == nullptr) {
    conv_one_pixel_forward(s, x, w, pass, y);
    return;
  }
  if (conv_direct_applies(s)) {
    conv_direct_forward(s, x, w, pass, y);
    return;
  }
  if (use_implicit(g)) {
    forward_implicit(g, x, w, pass, y);
    return;
  }
  const std::vector<Chunk> chunks = plan_chunks(g);
  const int64_t G = s.groups, cout = s.out_channels, items = int64_t(chunks.size()) * G;
  for_items(items, spread_items(items), [&](int64_t item) {
    const Chunk& ch = chunks[item / G];
    const int64_t grp = item % G, width = ch.width();
    const float* wg = w + grp * g.cout_g * g.kg;
    // The input map of the group's channels, applied by the GEMM's packers (rows of bmat are
    // the group's input channels, for a 1x1 kernel read in place: one image, or column blocks).
    GemmRowAffine map;
    if (prologue.scale != nullptr) {
      map.scale = prologue.scale + grp * g.cin_g;
      map.shift = prologue.shift + grp * g.cin_g;
    }
    // The right-hand matrix: the input itself for a 1x1 kernel, read where it lies, else
    // im2col.
    const float* bmat;
    int64_t ldb;
    GemmColumnBlocks blocks;
    if (g.pointwise) {
      bmat = chunk_matrix(g, x, s.in_channels, grp * g.cin_g, ch, &ldb, &blocks);
    } else {
      float* col = scratch(0, g.kg * width);
      build_col(g, x, grp, ch, col);
      bmat = col;
      ldb = width;
    }
    if (ch.in_place()) {
      float* yc = y + (ch.n0 * cout + grp * g.cout_g) * g.p + ch.p0;
      gemm_finished(pass, grp * g.cout_g, g.cout_g, width, g.kg, wg, bmat, ldb, yc, g.p, map);
    } else {
      gemm_scattered(g, ch, false, g.cout_g, g.kg, wg, g.kg, bmat, ldb, map, blocks, cout,
                     grp * g.cout_g, pass, scratch(1, g.cout_g * width), y);
    }
  });
}

namespace {

// The three algorithms of conv2d_backward_data, chosen in that function.

// The transposed convolution applies when it needs no negative padding.
bool backward_data_is_convolution(const Geometry& g) {
  const Conv2dShape& s = g.s;
  return !g.pointwise && s.stride_h == 1 && s.stride_w == 1 && s.pad_h < s.kernel_h &&
         s.pad_w < s.kernel_w;
}

// With stride 1 the input gradient is itself a convolution: of dy, zero-padded by k-1-p,
// with the kernel flipped and the channel roles swapped,
//   dx[ci, ih, iw] = sum_{co, i, j} dy[co, ih + ph - i, iw + pw - j] w[co, ci, i, j].
// Running it through the forward path replaces the scatter-adds of col2im (a read-modify-
// write of dx per im2col element) by im2col's plain reads.
void backward_data_by_convolution(const Geometry& g, const float* dy, const float* w, float* dx,
                                  float* workspace) {
  const Conv2dShape& s = g.s;
  Conv2dShape t = s;
  t.in_channels = s.out_channels;
  t.in_h = g.ho;
  t.in_w = g.wo;
  t.out_channels = s.in_channels;
  t.pad_h = s.kernel_h - 1 - s.pad_h;
  t.pad_w = s.kernel_w - 1 - s.pad_w;
  const int64_t kk = s.kernel_h * s.kernel_w;
  // wt[g * cin_g + ci, co, i, j] = w[g * cout_g + co, ci, kh - 1 - i, kw - 1 - j]
  std::vector<float> wt(static_cast<size_t>(s.in_channels * g.cout_g * kk));
  for (int64_t grp = 0; grp < s.groups; ++grp) {
    for (int64_t co = 0; co < g.cout_g; ++co) {
      for (int64_t ci = 0; ci < g.cin_g; ++ci) {
        const float* src = w + ((grp * g.cout_g + co) * g.cin_g + ci) * kk;
        float* dst = wt.data() + ((grp * g.cin_g + ci) * g.cout_g + co) * kk;
        for (int64_t k = 0; k < kk; ++k) dst[k] = src[kk - 1 - k];
      }
    }
  }
  conv2d_forward(t, dy, wt.data(), nullptr, dx, workspace);
}

// 1x1 kernel: dx_g[:, chunk] = W_g^T dy_g[:, chunk]; every dx element is written by exactly
// one item.
void backward_data_pointwise(const Geometry& g, const std::vector<Chunk>& chunks, const float* dy,
                             const float* w, float* dx) {
  const int64_t G = g.s.groups, cin = g.s.in_channels;
  const int64_t items = int64_t(chunks.size()) * G;
  for_items(items, spread_items(items), [&](int64_t item) {
    const Chunk& ch = chunks[item / G];
    const int64_t grp = item % G, width = ch.width();
    const float* wg = w + grp * g.cout_g * g.cin_g;
    int64_t lddy;
    GemmColumnBlocks blocks;
    const float* dym = chunk_matrix(g, dy, g.s.out_channels, grp * g.cout_g, ch, &lddy, &blocks);
    if (ch.in_place()) {
      float* dxc = dx + (ch.n0 * cin + grp * g.cin_g) * g.hw + ch.p0;
      gemm(true, false, g.cin_g, width, g.cout_g, 1.0f, wg, g.cin_g, dym, lddy, 0.0f, dxc, g.hw);
    } else {
      gemm_scattered(g, ch, true, g.cin_g, g.cout_g, wg, g.cin_g, dym, lddy, {}, blocks, cin,
                     grp * g.cin_g, ConvOutputPass(nullptr, {}), scratch(0, g.cin_g * width), dx);
    }
  });
}

// General kernel: dcol = W_g^T dy_g, then col2im adds dcol into dx. col2im of neighbouring
// chunks of one image overlap (the patches of the rows at a chunk border share input rows), so
// one item owns whole images: all chunks of one image, or one multi-image chunk. Items then
// write disjoint parts of dx.
void backward_data_col2im(const Geometry& g, const std::vector<Chunk>& chunks, const float* dy,
                          const float* w, float* dx) {
  const int64_t G = g.s.groups, cin = g.s.in_channels;
  std::vector<std::pair<size_t, size_t>> owners;  // chunk ranges [first, last)
  for (size_t c = 0; c < chunks.size();) {
    size_t e = c + 1;
    while (e < chunks.size() && chunks[e].in_place() && chunks[e].n0 == chunks[c].n0) ++e;
    owners.push_back({c, e});
    c = e;
  }
  const int64_t items = int64_t(owners.size()) * G;
  for_items(items, spread_items(items), [&](int64_t item) {
    const auto [first, last] = owners[item / G];
    const int64_t grp = item % G;
    const float* wg = w + grp * g.cout_g * g.kg;
    // This item's dx planes start at zero; col2im adds into them.
    const Chunk& c0 = chunks[first];
    for (int64_t k = 0; k < c0.images; ++k) {
      float* dxg = dx + ((c0.n0 + k) * cin + grp * g.cin_g) * g.hw;
      std::fill(dxg, dxg + g.cin_g * g.hw, 0.0f);
    }
    for (size_t c = first; c < last; ++c) {
      const Chunk& ch = chunks[c];
      const int64_t width = ch.width();
      int64_t lddy;
      GemmColumnBlocks blocks;
      const float* dym = chunk_matrix(g, dy, g.s.out_channels, grp * g.cout_g, ch, &lddy, &blocks);
      float* dcol = scratch(0, g.kg * width);
      gemm_with_pass(true, false, g.kg, width, g.cout_g, 1.0f, wg, g.kg, dym, lddy, 0.0f, dcol,
                     width, GemmRowPass{}, {}, blocks);
      for (int64_t k = 0; k < ch.images; ++k) {
        float* dxg = dx + ((ch.n0 + k) * cin + grp * g.cin_g) * g.hw;
        col2im(g, dcol + k * ch.span(), width, ch.p0, ch.p1, dxg);
      }
    }
  });
}

}  // namespace

// Derivation: docs/derivations.md#grouped-convolution-backward
void conv2d_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                          float* workspace) {
  const Geometry g(s);
  if (conv_one_pixel_applies(s)) {
    conv_one_pixel_backward_data(s, dy, w, dx);
  } else if (backward_data_is_convolution(g)) {
    backward_data_by_convolution(g, dy, w, dx, workspace);
  } else if (g.pointwise) {
    backward_data_pointwise(g, plan_chunks(g), dy, w, dx);
  } else {
    backward_data_col2im(g, plan_chunks(g), dy, w, dx);
  }
}

// Derivation: docs/derivations.md#grouped-convolution-backward
void conv2d_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                            float* db, float* /*workspace*/) {
  const Geometry g(s);
  if (dw && conv_one_pixel_applies(s)) {
    conv_one_pixel_backward_weight(s, x, dy, dw);
  } else if (dw) {
    weight_gradient(g, x, dy, dw);
  }
  if (db) bias_gradient(g, dy, db);
}

}  // namespace nextvit::kernels::cpu
