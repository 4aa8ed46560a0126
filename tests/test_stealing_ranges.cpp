// Work stealing on ranges (kernels/cpu/stealing_ranges.h), which the 48-column GEMM path deals
// its tiles of rows with: every item handed out exactly once, a thread's own range from its
// front in order and in chunks, the rest of the others' from their backs, and the same when two
// threads race for a range (the one that finishes first takes what the other has left), and
// under contention.
#include <omp.h>

#include <atomic>
#include <vector>

#include "kernels/cpu/stealing_ranges.h"
#include "test_util.h"

using nextvit::kernels::cpu::StealingRanges;

namespace {

struct Claim {
  int64_t lo, hi;
};

// Every claim of thread t until none is left.
std::vector<Claim> drain(StealingRanges& ranges, int t) {
  std::vector<Claim> claims;
  int64_t lo = 0, hi = 0;
  while (ranges.next(t, lo, hi)) claims.push_back({lo, hi});
  return claims;
}

// How many times each of items [0, n) was handed out.
std::vector<int> coverage(const std::vector<Claim>& claims, int64_t n) {
  std::vector<int> count(static_cast<size_t>(n), 0);
  for (const Claim& c : claims) {
    for (int64_t i = c.lo; i < c.hi; ++i) ++count[static_cast<size_t>(i)];
  }
  return count;
}

}  // namespace

TEST_CASE("stealing ranges: one thread takes its range in order, then the others' from the back",
          "[parallel]") {
  // 23 items over 3 ranges: [0, 7), [7, 15), [15, 23); chunks of 3.
  StealingRanges ranges(23, 3, 3);
  CHECK(ranges.range_end(0) == 7);
  CHECK(ranges.range_end(6) == 7);
  CHECK(ranges.range_end(7) == 15);
  CHECK(ranges.range_end(22) == 23);
  const std::vector<Claim> claims = drain(ranges, 1);
  // Its own range from the front: [7, 10), [10, 13), [13, 15); then each time the back of the
  // range with the most items left: [20, 23) (8 left against 7), [4, 7) (7 against 5), [17, 20)
  // (5 against 4), [1, 4), [15, 17), [0, 1).
  const std::vector<Claim> expected = {{7, 10},  {10, 13}, {13, 15}, {20, 23}, {4, 7},
                                       {17, 20}, {1, 4},   {15, 17}, {0, 1}};
  REQUIRE(claims.size() == expected.size());
  for (size_t i = 0; i < claims.size(); ++i) {
    INFO("claim " << i);
    CHECK(claims[i].lo == expected[i].lo);
    CHECK(claims[i].hi == expected[i].hi);
  }
  int64_t lo = 0, hi = 0;
  CHECK_FALSE(ranges.next(0, lo, hi));
  CHECK_FALSE(ranges.next(2, lo, hi));
}

TEST_CASE("stealing ranges: every item once, for any size, chunk and thread count", "[parallel]") {
  for (int threads : {1, 2, 3, 5}) {
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{4}, int64_t{37}, int64_t{384}}) {
      for (int64_t chunk : {int64_t{1}, int64_t{2}, int64_t{7}, int64_t{1000}}) {
        StealingRanges ranges(n, threads, chunk);
        std::vector<Claim> all;
        for (int t = threads - 1; t >= 0; --t) {  // the last thread first: it steals the most
          for (const Claim& c : drain(ranges, t)) {
            CHECK(c.hi - c.lo >= 1);
            CHECK(c.hi - c.lo <= chunk);
            all.push_back(c);
          }
        }
        INFO("threads " << threads << " n " << n << " chunk " << chunk);
        CHECK(coverage(all, n) == std::vector<int>(static_cast<size_t>(n), 1));
      }
    }
  }
}

TEST_CASE("stealing ranges: a thread that finishes first takes what the other has left",
          "[parallel]") {
  // Thread 0 claims one chunk of its range and waits; thread 1 drains everything, so it must
  // take the rest of thread 0's range from its back; then thread 0 finds nothing left. Run by
  // two real threads, so that the claims race on the atomics as they do in the GEMM.
  StealingRanges ranges(40, 2, 4);
  std::vector<Claim> claims[2];
  std::atomic<int> stage{0};
  int team = 0;
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
#pragma omp single
    team = omp_get_num_threads();
    if (team == 2 && t == 0) {
      int64_t lo = 0, hi = 0;
      if (ranges.next(0, lo, hi)) claims[0].push_back({lo, hi});
      stage.store(1);
      while (stage.load() != 2) {
      }
      for (const Claim& c : drain(ranges, 0)) claims[0].push_back(c);
    } else if (team == 2) {
      while (stage.load() != 1) {
      }
      claims[1] = drain(ranges, 1);
      stage.store(2);
    }
  }
  if (team != 2) return;  // one thread granted: nothing to race
  REQUIRE(claims[0].size() == 1);
  CHECK(claims[0][0].lo == 0);
  CHECK(claims[0][0].hi == 4);
  // Thread 1: its own [20, 40) from the front, then thread 0's [4, 20) from the back.
  std::vector<Claim> both = claims[1];
  both.push_back(claims[0][0]);
  CHECK(coverage(both, 40) == std::vector<int>(40, 1));
  REQUIRE(claims[1].size() == 9);
  CHECK(claims[1][0].lo == 20);
  CHECK(claims[1][5].lo == 16);
  CHECK(claims[1][5].hi == 20);
  CHECK(claims[1][8].lo == 4);
}

TEST_CASE("stealing ranges: under contention every item is still handed out once", "[parallel]") {
  // Up to four threads drain the same ranges item by item, many times over, so that claims from
  // the front and from the back meet on the same range while both are in flight; thread 0 does
  // busy work between claims so that the others steal from it.
  for (int round = 0; round < 200; ++round) {
    const int64_t n = 257 + round % 7;
    StealingRanges ranges(n, 4, 1 + round % 3);
    std::vector<std::atomic<int>> count(static_cast<size_t>(n));
    for (auto& c : count) c.store(0);
#pragma omp parallel num_threads(4)
    {
      const int t = omp_get_thread_num();
      int64_t lo = 0, hi = 0;
      volatile int64_t sink = 0;
      while (ranges.next(t, lo, hi)) {
        for (int64_t i = lo; i < hi; ++i) count[static_cast<size_t>(i)].fetch_add(1);
        if (t == 0) {
          for (int k = 0; k < 2000; ++k) sink = sink + k;
        }
      }
    }
    int64_t wrong = 0;
    for (const auto& c : count) wrong += c.load() != 1;
    INFO("round " << round);
    REQUIRE(wrong == 0);
  }
}
