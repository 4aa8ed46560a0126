#include "core/allocator.h"

#include <unistd.h>

#include <cstdlib>
#include <new>

#include "core/cuda_runtime.h"
#include "core/error.h"
#include "core/host_block_cache.h"

namespace nextvit {

size_t physical_memory_bytes() {
  static const size_t bytes = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
  }();
  return bytes;
}

namespace {

// 64-byte aligned host memory: blocks of 256 KiB and more from the block cache (reused from one
// forward to the next without page faults, core/host_block_cache.h), smaller ones from the C
// library (rounded up to the alignment, as std::aligned_alloc requires).
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    // Linux overcommits: a request far beyond the machine's memory may "succeed" and the
    // process is killed later while touching it. Refuse it here, with its size, instead.
    const size_t limit = physical_memory_bytes();
    NV_CHECK(limit == 0 || bytes <= limit,
             "cannot allocate {:.1f} GB for one tensor: this machine has {:.1f} GB of memory",
             bytes / 1e9, limit / 1e9);
    void* p = bytes >= kHostCacheMinBytes ? host_block_allocate(bytes)
                                          : std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    NV_CHECK(p != nullptr, "out of host memory allocating {} bytes", bytes);
    return p;
  }
  void deallocate(void* ptr, size_t bytes) override {
    if (bytes >= kHostCacheMinBytes) {
      host_block_deallocate(ptr, bytes);
    } else {
      std::free(ptr);
    }
  }
  const char* name() const override { return "cpu"; }
};

CpuAllocator g_cpu_allocator;
Allocator* g_allocators[2] = {&g_cpu_allocator, nullptr};

}  // namespace

// CUDA: each device has its own caching allocator; set_allocator's replacement (a test's)
// serves every device.
Allocator* allocator_for(Device device) {
  if (device.is_cpu()) return g_allocators[0];
  if (g_allocators[1] != nullptr) return g_allocators[1];
  return cuda_rt::device_allocator(device.index);
}

Allocator* set_allocator(DeviceType type, Allocator* allocator) {
  Allocator*& slot = g_allocators[type == DeviceType::CPU ? 0 : 1];
  Allocator* previous = slot;
  slot = allocator;
  return previous;
}

}  // namespace nextvit
