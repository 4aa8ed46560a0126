#include "core/cuda/caching_allocator.h"

#include <map>
#include <mutex>
#include <unordered_map>

#include "core/cuda/check.h"

namespace nextvit::cuda_rt {

namespace {
constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = size_t{2} << 20;
constexpr size_t kLargeThreshold = size_t{1} << 20;

size_t round_size(size_t bytes) {
  const size_t g = bytes < kLargeThreshold ? kSmallGranule : kLargeGranule;
  return (bytes + g - 1) / g * g;
}
}  // namespace

class CachingAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    // Best fit among cached blocks of exactly this rounded size (blocks are never split, so a
    // larger block would waste memory for as long as this allocation lives).
    auto it = free_.find(size);
    void* ptr = nullptr;
    if (it != free_.end()) {
      ptr = it->second;
      free_.erase(it);
      stats_.cached_bytes -= size;
    } else {
      cudaError_t err = cudaMalloc(&ptr, size);
      const size_t cached_before = stats_.cached_bytes;
      if (err == cudaErrorMemoryAllocation) {
        // Out of memory: give the cached blocks back to the device and try once more.
        (void)cudaGetLastError();
        release_locked();
        err = cudaMalloc(&ptr, size);
      }
      if (err != cudaSuccess) fail_allocation(err, bytes, cached_before);
      ++stats_.cuda_malloc_calls;
    }
    sizes_[ptr] = size;
    stats_.in_use_bytes += size;
    stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
    return ptr;
  }

  void deallocate(void* ptr, size_t) override {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = sizes_.find(ptr);
    if (it == sizes_.end()) return;  // not ours: ignore rather than corrupt the cache
    const size_t size = it->second;
    sizes_.erase(it);
    stats_.in_use_bytes -= size;
    stats_.cached_bytes += size;
    // All kernels run on one stream, so a block freed here can be reused by any later launch
    // on that stream without an event: the stream orders the old use before the new one.
    free_.emplace(size, ptr);
  }

  const char* name() const override { return "cuda-caching"; }

  // Only a real out-of-memory is reported as one: any other error of cudaMalloc is a fault that
  // happened earlier (a kernel's illegal address is sticky: every later call returns it), and
  // calling it "out of memory" would send the user looking in the wrong place.
  [[noreturn]] void fail_allocation(cudaError_t err, size_t bytes, size_t cached_before) {
    (void)cudaGetLastError();
    NV_CHECK(err == cudaErrorMemoryAllocation,
             "CUDA error {} ({}) while allocating {} bytes: the device is in an error state "
             "from an earlier kernel or copy (run with NEXTVIT_CUDA_SYNC=1 to find which)",
             int(err), cudaGetErrorString(err), bytes);
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    NV_FAIL(
        "CUDA out of memory: requested {} bytes ({:.1f} MiB); {:.1f} MiB in use by nextvit, "
        "{:.1f} MiB were cached and have been released, {:.1f} MiB free of {:.1f} MiB on the "
        "device",
        bytes, bytes / 1048576.0, stats_.in_use_bytes / 1048576.0, cached_before / 1048576.0,
        free_b / 1048576.0, total_b / 1048576.0);
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_locked();
  }

 private:
  void release_locked() {
    cudaDeviceSynchronize();
    for (auto& [size, ptr] : free_) cudaFree(ptr);
    free_.clear();
    stats_.cached_bytes = 0;
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> sizes_;
  AllocatorStats stats_;
};

namespace {
CachingAllocator* instance() {
  static CachingAllocator* a = new CachingAllocator();  // never destroyed: outlives tensors
  return a;
}
}  // namespace

Allocator* caching_allocator() {
  return instance();
}
AllocatorStats allocator_stats() {
  return instance()->stats();
}
void release_cached_memory() {
  instance()->release();
}

}  // namespace nextvit::cuda_rt
