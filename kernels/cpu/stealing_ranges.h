#pragma once
// Work items [0, n) cut into one contiguous range per thread, as a static split would, except
// that a thread which has finished its own range takes chunks from the back of the range with
// the most items left (work stealing on ranges).
//
// Why. On a shared 2-core machine the two threads of a parallel region rarely finish together
// even when their work is equal: measured on a Zen 4 guest (Next-ViT-S's batch-1 forward, 2
// threads), the 48-column GEMM's regions, statically split, ended with one thread idle for 6 %
// of their time on average, the second thread (the one woken for the region) the later one two
// times in three. Taking the other's last chunks lets the idle one help instead; each thread
// still walks its own rows in order from the front, so the prefetching and cache reuse of a
// contiguous range are kept, and which thread computes an item never changes its bits.
//
// How. Each range's front and back (items) share one 64-bit atomic, so that the owner's claim
// from the front and a thief's from the back never hand out the same item: each is a
// compare-and-swap on both bounds at once.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

namespace nextvit::kernels::cpu {

class StealingRanges {
 public:
  // n items (at most 2^31 - 1) over `threads` ranges, claimed `chunk` items at a time.
  StealingRanges(int64_t n, int threads, int64_t chunk)
      : ranges_(new Range[static_cast<size_t>(threads)]), n_(n), threads_(threads), chunk_(chunk) {
    for (int t = 0; t < threads; ++t) {
      ranges_[t].bounds.store(pack(start(t), start(t + 1)), std::memory_order_relaxed);
    }
  }

  // Where the range that item i was dealt to ended at the start: how far ahead of i its
  // claimer may prefetch.
  int64_t range_end(int64_t i) const {
    int t = static_cast<int>(i * threads_ / n_);
    while (start(t + 1) <= i) ++t;
    while (start(t) > i) --t;
    return start(t + 1);
  }

  // The next items [lo, hi) for thread t: from the front of its own range while it lasts, then
  // from the back of whichever range has the most left. False when no item is left anywhere.
  bool next(int t, int64_t& lo, int64_t& hi) {
    if (claim_front(ranges_[t], lo, hi)) return true;
    for (;;) {
      Range* victim = nullptr;
      int64_t most = 0;
      for (int v = 0; v < threads_; ++v) {
        const uint64_t b = ranges_[v].bounds.load(std::memory_order_relaxed);
        if (back(b) - front(b) > most) most = back(b) - front(b), victim = &ranges_[v];
      }
      if (victim == nullptr) return false;
      if (claim_back(*victim, lo, hi)) return true;
    }
  }

 private:
  struct alignas(64) Range {
    std::atomic<uint64_t> bounds{0};  // front in the low 32 bits, back in the high 32
  };
  int64_t start(int t) const { return n_ * t / threads_; }
  static uint64_t pack(int64_t f, int64_t b) {
    return static_cast<uint64_t>(f) | static_cast<uint64_t>(b) << 32;
  }
  static int64_t front(uint64_t b) { return static_cast<int64_t>(b & 0xffffffffu); }
  static int64_t back(uint64_t b) { return static_cast<int64_t>(b >> 32); }

  bool claim_front(Range& r, int64_t& lo, int64_t& hi) {
    uint64_t b = r.bounds.load(std::memory_order_relaxed);
    for (;;) {
      if (front(b) >= back(b)) return false;
      const int64_t end = std::min(back(b), front(b) + chunk_);
      if (r.bounds.compare_exchange_weak(b, pack(end, back(b)), std::memory_order_relaxed)) {
        lo = front(b), hi = end;
        return true;
      }
    }
  }
  // False when the range emptied meanwhile (the caller looks again).
  bool claim_back(Range& r, int64_t& lo, int64_t& hi) {
    uint64_t b = r.bounds.load(std::memory_order_relaxed);
    for (;;) {
      if (front(b) >= back(b)) return false;
      const int64_t first = std::max(front(b), back(b) - chunk_);
      if (r.bounds.compare_exchange_weak(b, pack(front(b), first), std::memory_order_relaxed)) {
        lo = first, hi = back(b);
        return true;
      }
    }
  }

  std::unique_ptr<Range[]> ranges_;
  int64_t n_;
  int threads_;
  int64_t chunk_;
};

// f(t, i) for every item i in [0, n) on `threads` OpenMP threads (t: the calling thread's
// number), each thread's own range of items in order, then items stolen from the others' backs
// `chunk` at a time. Should fewer threads be granted, the missing ones' ranges are all stolen.
template <typename F>
void parallel_for_stealing(int64_t n, int threads, int64_t chunk, const F& f) {
  StealingRanges ranges(n, threads, chunk);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    int64_t lo = 0, hi = 0;
    while (ranges.next(t, lo, hi)) {
      for (int64_t i = lo; i < hi; ++i) f(t, i);
    }
  }
}

}  // namespace nextvit::kernels::cpu
