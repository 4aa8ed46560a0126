#include "core/allocator.h"

#include <cstdlib>
#include <new>

#include "core/cuda_runtime.h"
#include "core/error.h"

namespace nextvit {
namespace {

// 64-byte aligned host memory from the C library. Sizes are rounded up to the alignment, as
// std::aligned_alloc requires.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    NV_CHECK(p != nullptr, "out of host memory allocating {} bytes", bytes);
    return p;
  }
  void deallocate(void* ptr, size_t) override { std::free(ptr); }
  const char* name() const override { return "cpu"; }
};

CpuAllocator g_cpu_allocator;
Allocator* g_allocators[2] = {&g_cpu_allocator, nullptr};

}  // namespace

Allocator* allocator_for(Device device) {
  if (device.is_cpu()) return g_allocators[0];
  if (g_allocators[1] == nullptr) g_allocators[1] = cuda_rt::device_allocator();
  return g_allocators[1];
}

Allocator* set_allocator(DeviceType type, Allocator* allocator) {
  Allocator*& slot = g_allocators[type == DeviceType::CPU ? 0 : 1];
  Allocator* previous = slot;
  slot = allocator;
  return previous;
}

}  // namespace nextvit
