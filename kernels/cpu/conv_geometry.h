#pragma once
// What the CPU convolution (kernels/cpu/conv2d.cpp) and the pieces it calls share
// (kernels/cpu/conv_im2col.cpp, kernels/cpu/conv_implicit.cpp): a convolution's derived sizes,
// its chunks of output positions, how (chunk, group) items are spread over the threads, and the
// per-thread scratch buffers.
#include <omp.h>

#include <cstdint>

#include "kernels/conv2d.h"

namespace nextvit::kernels::cpu::conv_detail {

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

inline int available_threads() {
  return omp_in_parallel() ? 1 : omp_get_max_threads();
}

// Whether to spread `items` equal-sized items over the threads (true) or run them in turn with
// each one's work split (false).
inline bool spread_items(int64_t items) {
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

// Per-thread scratch buffers, grown on demand and kept (OpenMP keeps its threads). Slot 0: a
// chunk's im2col matrix (or the implicit path's packed weights, or the input gradient's dcol);
// slot 1: the product of a chunk of several images before it is scattered; slot 2: im2col's
// zero-padded images.
float* scratch(int slot, int64_t floats);

}  // namespace nextvit::kernels::cpu::conv_detail
