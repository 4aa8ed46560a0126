// core/host_block_cache: freed large host blocks serve later requests of their size class, a
// miss first gives back as much cached memory as it maps, the cache stays within its bound,
// and the CPU allocator routes large tensors through it. (Built with AddressSanitizer the
// cache is off: only the plain-allocation checks run.)
#include <cstdint>
#include <cstring>

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
  const size_t previous = set_host_block_cache_limit(7 * kMiB);
  host_block_cache_release();
  void* blocks[3] = {touched(3 * kMiB), touched(3 * kMiB), touched(3 * kMiB)};
  for (void* p : blocks) host_block_deallocate(p, 3 * kMiB);
  // Two 3 MiB blocks fit under 7 MiB; the third was unmapped.
  const HostBlockCacheStats s0 = host_block_cache_stats();
  CHECK(s0.cached_bytes == 6 * kMiB);
  CHECK(s0.peak_bytes >= s0.live_bytes + 9 * kMiB);
  // A 5 MiB miss would take live + cached to 11 MiB over the live bytes: when that passes the
  // peak, the oldest cached block is unmapped first, and the peak does not grow.
  void* d = touched(5 * kMiB);
  const HostBlockCacheStats s1 = host_block_cache_stats();
  CHECK(s1.misses == s0.misses + 1);
  CHECK(s1.peak_bytes == s0.peak_bytes);
  CHECK(s1.live_bytes + s1.cached_bytes <= s1.peak_bytes);
  if (s0.live_bytes + 11 * kMiB > s0.peak_bytes) CHECK(s1.cached_bytes == 3 * kMiB);
  host_block_deallocate(d, 5 * kMiB);
  // Lowering the bound unmaps the excess (oldest first).
  set_host_block_cache_limit(4 * kMiB);
  CHECK(host_block_cache_stats().cached_bytes <= 4 * kMiB);
  set_host_block_cache_limit(previous);
}

TEST_CASE("host block cache: the CPU allocator serves tensors of 4 MiB and more from it",
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
