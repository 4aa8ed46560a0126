// im2col and col2im (kernels/cpu/conv_im2col.h): row by row for wide output rows, through a
// table of input offsets and masked gathers for narrow ones, through zero-padded copies at
// 14 x 14 with stride 1, and by one vector permutation per channel and kernel offset for images
// of at most 16 pixels (AVX-512).
#include "kernels/cpu/conv_im2col.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/copy_floats.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"
#if NEXTVIT_CPU_X86
#include <immintrin.h>
#endif

namespace nextvit::kernels::cpu::conv_detail {
namespace {

// Rows of im2col / col2im below which splitting them across threads does not pay.
constexpr int64_t kRowGrain = 16;

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

}  // namespace

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

void build_col(const Geometry& g, const float* x, int64_t grp, const Chunk& ch, float* col) {
  const int64_t cin = g.s.in_channels;
  im2col(g, x + (ch.n0 * cin + grp * g.cin_g) * g.hw, ch.images, cin * g.hw, ch.p0, ch.p1, col,
         ch.width());
}

}  // namespace nextvit::kernels::cpu::conv_detail
