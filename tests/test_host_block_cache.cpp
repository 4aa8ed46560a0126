// core/host_block_cache: freed large host blocks serve later requests of their size class, a
// miss first gives back as much cached memory as it maps, the cache stays within its bound,
// and the CPU allocator routes large tensors through it. (Built with AddressSanitizer the
// cache is off: only the plain-allocation checks run.)
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/host_block_cache.h"
#include "core/tensor.h"
#include "test_util.h"

using namespace nextvit;

namespace {

constexpr size_t kMiB = size_t{1} << 20;

// A block from the cache, 64-byte aligned, every byte written (so its pages are resident).
void* touched(size_t bytes) {
  void* p = host_block_allocate(bytes);
  REQUIRE(p != nullptr);
  REQUIRE(reinterpret_cast<uintptr_t>(p) % 64 == 0);
  std::memset(p, 0x5a, bytes);
  return p;
}

}  // namespace

TEST_CASE("host block cache: a freed block serves the next request of its size class", "[core]") {
  void* a = touched(3 * kMiB);
  host_block_deallocate(a, 3 * kMiB);
  const HostBlockCacheStats before = host_block_cache_stats();
  // 2.9 MiB rounds up to the same 3 MiB class (multiples of 256 KiB between 2 and 4 MiB).
  void* b = touched(3 * kMiB - 100 * 1024);
  const HostBlockCacheStats after = host_block_cache_stats();
  if (host_block_cache_limit() != 0) {  // else an AddressSanitizer build: no cache
    CHECK(b == a);
    CHECK(after.hits == before.hits + 1);
    CHECK(after.misses == before.misses);
    CHECK(after.cached_bytes + 3 * kMiB == before.cached_bytes);
    // A smaller class takes a cached block of up to twice its size (best fit).
    host_block_deallocate(b, 3 * kMiB - 100 * 1024);
    void* d = touched(2 * kMiB);
    CHECK(d == b);
    CHECK(host_block_cache_stats().hits == after.hits + 1);
    host_block_deallocate(d, 2 * kMiB);
    // Neither a larger class (5 MiB) nor one of less than half (1 MiB) takes the 3 MiB block.
    for (size_t bytes : {5 * kMiB, kMiB}) {
      const size_t misses = host_block_cache_stats().misses;
      void* e = touched(bytes);
      CHECK(host_block_cache_stats().misses == misses + 1);
      host_block_deallocate(e, bytes);
    }
  } else {
    host_block_deallocate(b, 3 * kMiB - 100 * 1024);
  }
  host_block_cache_release();
  CHECK(host_block_cache_stats().cached_bytes == 0);
}

TEST_CASE("host block cache: a miss gives back cached memory first, and the bound holds",
          "[core]") {
  if (host_block_cache_limit() == 0) {
    WARN("skipped: the host block cache is off in AddressSanitizer builds");
    return;
  }
  const size_t previous = set_host_block_cache_limit(size_t{1} << 30);
  host_block_cache_release();
  // Blocks of 3 MiB, enough to set a new live peak and to cache more than a miss larger than
  // the slack, all freed: such a miss would take live + cached + the new block past the bound,
  // so the oldest cached blocks are unmapped first.
  const HostBlockCacheStats start = host_block_cache_stats();
  const size_t headroom = start.live_peak_bytes - start.live_bytes;
  if (headroom > 512 * kMiB) {
    WARN("skipped: this process's live peak is far above its live bytes");
    set_host_block_cache_limit(previous);
    return;
  }
  const size_t target = std::max(headroom + 32 * kMiB, (start.live_bytes + 256 * kMiB) / 15);
  std::vector<void*> blocks;
  while (blocks.size() * 3 * kMiB < target + 3 * kMiB) blocks.push_back(touched(3 * kMiB));
  for (void* p : blocks) host_block_deallocate(p, 3 * kMiB);
  const HostBlockCacheStats s0 = host_block_cache_stats();
  CHECK(s0.cached_bytes == blocks.size() * 3 * kMiB);
  CHECK(s0.live_peak_bytes == s0.live_bytes + s0.cached_bytes);
  const size_t request =
      host_block_cache_bound(s0.live_peak_bytes) - s0.live_peak_bytes + 16 * kMiB;
  REQUIRE(request <= s0.cached_bytes);
  void* d = touched(request);
  const HostBlockCacheStats s1 = host_block_cache_stats();
  CHECK(s1.misses == s0.misses + 1);
  const size_t bound = host_block_cache_bound(s1.live_peak_bytes);
  CHECK(s1.live_bytes + s1.cached_bytes <= bound);
  CHECK(s1.cached_bytes < s0.cached_bytes);                   // some were unmapped...
  CHECK(s1.cached_bytes + 3 * kMiB > bound - s1.live_bytes);  // ...no more than needed
  host_block_deallocate(d, request);
  // The bound is the live peak plus 1/4 of it, at least kHostCacheMinSlack.
  CHECK(host_block_cache_bound(0) == kHostCacheMinSlack);
  CHECK(host_block_cache_bound(1024 * kMiB) == 1280 * kMiB);
  // Lowering the limit unmaps the excess (oldest first).
  set_host_block_cache_limit(4 * kMiB);
  CHECK(host_block_cache_stats().cached_bytes <= 4 * kMiB);
  set_host_block_cache_limit(previous);
}

TEST_CASE("host block cache: the CPU allocator serves tensors of 256 KiB and more from it",
          "[core]") {
  const void* first;
  {
    Tensor big = Tensor::full({int64_t(kHostCacheMinBytes / 4)}, 1.0f);
    REQUIRE(big.data<float>()[kHostCacheMinBytes / 4 - 1] == 1.0f);
    first = big.data<float>();
  }
  const HostBlockCacheStats before = host_block_cache_stats();
  Tensor again = Tensor::full({int64_t(kHostCacheMinBytes / 4)}, 2.0f);
  REQUIRE(again.data<float>()[0] == 2.0f);
  REQUIRE(reinterpret_cast<uintptr_t>(again.data<float>()) % 64 == 0);
  if (host_block_cache_limit() != 0) {
    CHECK(static_cast<const void*>(again.data<float>()) == first);
    CHECK(host_block_cache_stats().hits == before.hits + 1);
  }
  // Below the threshold tensors come from the C library: the cache's counts do not move.
  const HostBlockCacheStats mid = host_block_cache_stats();
  { Tensor small = Tensor::full({int64_t(kHostCacheMinBytes / 8)}, 3.0f); }
  CHECK(host_block_cache_stats().hits == mid.hits);
  CHECK(host_block_cache_stats().misses == mid.misses);
  CHECK(host_block_cache_stats().cached_bytes == mid.cached_bytes);
}
