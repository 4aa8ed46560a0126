#include "core/host_block_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/allocator.h"
#include "core/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define NEXTVIT_HOST_CACHE_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NEXTVIT_HOST_CACHE_OFF 1
#endif
#endif

namespace nextvit {

#ifndef NEXTVIT_HOST_CACHE_OFF
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// The request rounded up to a multiple of 1/8 of its power of two, and to at least 4 KiB
// steps (whole pages).
size_t size_class(size_t bytes) {
  size_t power = size_t{32} << 10;
  while (power <= bytes / 2) power *= 2;
  const size_t step = power / 8;
  return (bytes + step - 1) / step * step;
}

// `bytes` (a page multiple) of fresh zero pages, 2 MiB-aligned: map 2 MiB more than needed and
// unmap the unaligned head and the tail. Null when the system refuses.
void* map_block(size_t bytes) {
  void* raw =
      mmap(nullptr, bytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + bytes + kHugePage;
  if (end > aligned + bytes)
    munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  void* p = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
  madvise(p, bytes, MADV_HUGEPAGE);  // advice only: without THP the block keeps 4 KiB pages
#endif
  return p;
}

size_t default_limit() {
  if (const char* env = std::getenv("NEXTVIT_HOST_CACHE_MIB")) {
    char* end = nullptr;
    const unsigned long long mib = std::strtoull(env, &end, 10);
    NV_CHECK(end != env && *end == '\0',
             "NEXTVIT_HOST_CACHE_MIB='{}': expected a whole number of MiB (0 turns the host "
             "block cache off)",
             env);
    return static_cast<size_t>(mib) << 20;
  }
  const size_t quarter = physical_memory_bytes() / 4;
  return std::min(quarter == 0 ? size_t{1} << 30 : quarter, size_t{4} << 30);
}

// The cached blocks in the order they were freed (oldest first). Never destroyed (a tensor held
// by a static may be freed after exit-time destructors ran); its blocks stay reachable through
// it, so no leak is reported.
//
// Resident memory stays close to what the C library would have needed: a hit reuses resident
// pages; a miss first unmaps the oldest cached blocks as far as needed for live + cached + the
// new block to stay within host_block_cache_bound() of the highest live bytes so far (all of
// them if that is not enough), so that the peak grows only when the live bytes alone do.
class Cache {
 public:
  void* allocate(size_t bytes) {
    const size_t cls = size_class(bytes);
    std::vector<Block> victims;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // Best fit: the smallest cached block of the class or up to twice its size (a block
      // already resident costs nothing more to reuse); among equals the most recently freed.
      size_t best = blocks_.size();
      for (size_t i = blocks_.size(); i-- > 0;) {
        const size_t b = blocks_[i].bytes;
        if (b >= cls && b <= 2 * cls && (best == blocks_.size() || b < blocks_[best].bytes)) {
          best = i;
        }
      }
      if (best < blocks_.size()) {
        const Block block = blocks_[best];
        blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(best));
        stats_.cached_bytes -= block.bytes;
        hand_out(block);
        ++stats_.hits;
        return block.ptr;
      }
      ++stats_.misses;
      const size_t after = live_ + stats_.cached_bytes + cls;
      const size_t bound = host_block_cache_bound(std::max(live_peak_, live_ + cls));
      if (after > bound) victims = take_oldest(after - bound);
    }
    unmap(victims);
    void* p = map_block(cls);
    if (p == nullptr) {  // the cache may hold what the system is missing
      release();
      p = map_block(cls);
    }
    if (p != nullptr) {
      std::lock_guard<std::mutex> lock(mutex_);
      hand_out({p, cls});
    }
    return p;
  }

  void deallocate(void* p, size_t) {
    Block block;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = live_blocks_.find(p);
      NV_CHECK(it != live_blocks_.end(), "host block cache: freeing {} that it never handed out",
               p);
      block = {p, it->second};
      live_blocks_.erase(it);
      live_ -= block.bytes;
      if (stats_.cached_bytes + block.bytes <= limit_) {
        blocks_.push_back(block);
        stats_.cached_bytes += block.bytes;
        return;
      }
    }
    munmap(block.ptr, block.bytes);
  }

  HostBlockCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    HostBlockCacheStats s = stats_;
    s.live_bytes = live_;
    s.live_peak_bytes = live_peak_;
    s.peak_bytes = peak_;
    return s;
  }
  size_t limit() {
    std::lock_guard<std::mutex> lock(mutex_);
    return limit_;
  }
  size_t set_limit(size_t bytes) {
    std::vector<Block> victims;
    size_t previous;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      previous = limit_;
      limit_ = bytes;
      if (stats_.cached_bytes > bytes) victims = take_oldest(stats_.cached_bytes - bytes);
    }
    unmap(victims);
    return previous;
  }
  void release() {
    std::vector<Block> victims;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      victims = take_oldest(stats_.cached_bytes);
    }
    unmap(victims);
  }

 private:
  struct Block {
    void* ptr;
    size_t bytes;
  };

  // Records a block as handed out (under the lock).
  void hand_out(const Block& block) {
    live_blocks_[block.ptr] = block.bytes;
    live_ += block.bytes;
    live_peak_ = std::max(live_peak_, live_);
    peak_ = std::max(peak_, live_ + stats_.cached_bytes);
  }

  // Removes the oldest cached blocks, at least `bytes` of them (or all); the caller unmaps
  // them outside the lock.
  std::vector<Block> take_oldest(size_t bytes) {
    size_t n = 0, freed = 0;
    while (n < blocks_.size() && freed < bytes) freed += blocks_[n++].bytes;
    std::vector<Block> taken(blocks_.begin(), blocks_.begin() + static_cast<std::ptrdiff_t>(n));
    blocks_.erase(blocks_.begin(), blocks_.begin() + static_cast<std::ptrdiff_t>(n));
    stats_.cached_bytes -= freed;
    return taken;
  }
  static void unmap(const std::vector<Block>& blocks) {
    for (const Block& b : blocks) munmap(b.ptr, b.bytes);
  }

  std::mutex mutex_;
  std::vector<Block> blocks_;                      // cached, oldest first
  std::unordered_map<void*, size_t> live_blocks_;  // handed out: mapped length
  HostBlockCacheStats stats_;
  size_t live_ = 0, live_peak_ = 0;  // bytes handed out now; the most handed out at once
  size_t peak_ = 0;                  // highest live + cached so far
  size_t limit_ = default_limit();
};

Cache& cache() {
  static Cache* c = new Cache();
  return *c;
}

}  // namespace

size_t host_block_cache_bound(size_t live_peak) {
  return live_peak + std::max(kHostCacheMinSlack, live_peak / kHostCacheSlackDivisor);
}

void* host_block_allocate(size_t bytes) {
  return cache().allocate(bytes);
}
void host_block_deallocate(void* ptr, size_t bytes) {
  cache().deallocate(ptr, bytes);
}
HostBlockCacheStats host_block_cache_stats() {
  return cache().stats();
}
size_t host_block_cache_limit() {
  return cache().limit();
}
size_t set_host_block_cache_limit(size_t bytes) {
  return cache().set_limit(bytes);
}
void host_block_cache_release() {
  cache().release();
}

#else  // AddressSanitizer: plain C library blocks

size_t host_block_cache_bound(size_t live_peak) {
  return live_peak;
}

void* host_block_allocate(size_t bytes) {
  return std::aligned_alloc(64, (bytes + 63) / 64 * 64);
}
void host_block_deallocate(void* ptr, size_t) {
  std::free(ptr);
}
HostBlockCacheStats host_block_cache_stats() {
  return {};
}
size_t host_block_cache_limit() {
  return 0;
}
size_t set_host_block_cache_limit(size_t) {
  return 0;
}
void host_block_cache_release() {}

#endif

}  // namespace nextvit
