// The caching device allocator (caching_allocator.h), after PyTorch's CUDACachingAllocator:
//
// - Sizes are rounded up to 512 bytes. Requests up to 1 MiB come from the small pool, whose
//   segments (cudaMalloc'd regions) are 2 MiB; larger ones from the large pool, whose segments
//   are 20 MiB for requests under 10 MiB and the request rounded up to 2 MiB above.
// - A request takes the smallest free block of its pool on its stream that fits (best fit), and
//   splits it when what is left is worth keeping (at least 512 bytes in the small pool, more
//   than 1 MiB in the large one: smaller remainders of large blocks would only fragment). A
//   freed block merges with its free neighbours in the segment, so a segment carved into many
//   activations during a forward becomes one block again after the backward.
// - A block belongs to the stream it was allocated on: work on that stream is ordered, so the
//   next allocation may reuse it at once. If another stream used it (record_stream), freeing
//   it records an event on each such stream, and it returns to the pool only when all of those
//   events have completed (polled with cudaEventQuery, which never waits).
// - NEXTVIT_CUDA_ALLOC=exact: no segments shared between blocks (each block is its own
//   cudaMalloc, reused only for the same rounded size), so that a memory checker
//   (compute-sanitizer memcheck, the emulator's bounds checks) sees the end of every tensor, as
//   PyTorch's PYTORCH_NO_CUDA_MEMORY_CACHING does for it. The emulated build defaults to exact
//   (its checkers are the point of it); NEXTVIT_CUDA_ALLOC=split selects splitting there.
// - CUDA graph capture (core/cuda_graph.h): the blocks a capture allocates come from a private
//   pool (a pool id on each block, first in the free-list order; fresh segments, taken in relaxed
//   capture mode so that the capture is not invalidated), reused only by that capture, and blocks
//   of other pools freed during the capture are held back. A replay writes the pool's blocks
//   again and reads the held ones, so neither may go to other work while the graph exists;
//   releasing the pool (the graph's destruction) returns both to the ordinary cache. This is the
//   simplest correct form of PyTorch's graph pools: no sharing of a pool between graphs.
// - Out of memory: every free whole segment is released (cudaFree) and the allocation retried
//   once; only then is "out of memory" reported, with the numbers that explain it.
#include "core/cuda/caching_allocator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/per_device.h"
#include "core/device_guard.h"

namespace nextvit::cuda_rt {

namespace {

constexpr size_t kRound = 512;
constexpr size_t kSmallRequest = size_t{1} << 20;  // up to this: the small pool
constexpr size_t kSmallSegment = size_t{2} << 20;
constexpr size_t kLargeSegment = size_t{20} << 20;
constexpr size_t kMediumRequest = size_t{10} << 20;  // below this: a 20 MiB segment
constexpr size_t kSegmentRound = size_t{2} << 20;

size_t round_size(size_t bytes) {
  return std::max(kRound, (bytes + kRound - 1) / kRound * kRound);
}

bool split_by_default() {
  const char* v = std::getenv("NEXTVIT_CUDA_ALLOC");
  if (v != nullptr && std::strcmp(v, "exact") == 0) return false;
  if (v != nullptr && std::strcmp(v, "split") == 0) return true;
  NV_CHECK(v == nullptr || *v == '\0', "NEXTVIT_CUDA_ALLOC must be 'split' or 'exact', got '{}'",
           v);
#ifdef NEXTVIT_CUDA_EMULATED
  return false;
#else
  return true;
#endif
}

size_t segment_size(size_t size) {
  if (size <= kSmallRequest) return kSmallSegment;
  if (size < kMediumRequest) return kLargeSegment;
  return (size + kSegmentRound - 1) / kSegmentRound * kSegmentRound;
}

struct Block {
  int pool = 0;  // 0: the ordinary cache; else the CUDA graph capture that allocated it
  char* ptr = nullptr;
  size_t size = 0;
  cudaStream_t stream = nullptr;
  bool small = false;
  bool allocated = false;  // handed out, or freed but waiting for other streams' events
  int pending_events = 0;  // events still to complete before the block is free
  Block* prev = nullptr;   // neighbours within the segment
  Block* next = nullptr;
  std::vector<cudaStream_t> other_streams;  // record_stream
};

// Free blocks ordered by stream, then size, then address: lower_bound finds the best fit.
struct BlockOrder {
  bool operator()(const Block* a, const Block* b) const {
    if (a->pool != b->pool) return a->pool < b->pool;
    if (a->stream != b->stream) {
      return reinterpret_cast<uintptr_t>(a->stream) < reinterpret_cast<uintptr_t>(b->stream);
    }
    if (a->size != b->size) return a->size < b->size;
    return a->ptr < b->ptr;
  }
};
using Pool = std::set<Block*, BlockOrder>;

}  // namespace

// One per device (instance() below): its blocks are that device's memory, on its stream. Each
// entry point makes the device current first, whichever device the calling thread is on.
class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}

  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t size = round_size(bytes);
    DeviceGuard guard(Device::cuda(device_));
    cudaStream_t stream = current_stream();
    std::lock_guard<std::mutex> lock(mutex_);
    process_events();
    Pool& pool = size <= kSmallRequest ? small_ : large_;
    Block key;
    key.pool = capture_pool_;
    key.stream = stream;
    key.size = size;
    auto it = pool.lower_bound(&key);
    Block* block = nullptr;
    if (it != pool.end() && (*it)->pool == key.pool && (*it)->stream == stream &&
        (split_ || (*it)->size == size)) {
      block = *it;
      pool.erase(it);
    } else {
      block = new_segment(bytes, size, stream);
    }
    if (split_) split(block, size, pool);
    block->allocated = true;
    allocated_[block->ptr] = block;
    stats_.allocated_bytes += block->size;
    stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
    return block->ptr;
  }

  void deallocate(void* ptr, size_t) override {
    if (ptr == nullptr) return;
    DeviceGuard guard(Device::cuda(device_));
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = allocated_.find(ptr);
    if (it == allocated_.end()) return;  // not ours: ignore rather than corrupt the cache
    Block* block = it->second;
    allocated_.erase(it);
    stats_.allocated_bytes -= block->size;
    if (capture_pool_ != 0 && block->pool != capture_pool_) {
      held_[capture_pool_].push_back(block);  // the graph still uses it: keep it allocated
      return;
    }
    if (block->other_streams.empty()) {
      free_block(block);
      return;
    }
    // Used on other streams too: free once their work queued so far has finished.
    for (cudaStream_t s : block->other_streams) {
      cudaEvent_t e = take_event();
      NV_CUDA_CHECK(cudaEventRecord(e, s), "recording a freed block's use on another stream");
      pending_.emplace_back(e, block);
      ++block->pending_events;
    }
    block->other_streams.clear();
  }

  const char* name() const override { return "cuda-caching"; }

  int begin_capture() {
    std::lock_guard<std::mutex> lock(mutex_);
    NV_CHECK(capture_pool_ == 0, "caching allocator: a graph capture is already running");
    capture_pool_ = next_pool_++;
    return capture_pool_;
  }

  void end_capture() {
    std::lock_guard<std::mutex> lock(mutex_);
    capture_pool_ = 0;
  }

  // The pool's blocks become ordinary cached (or, if still allocated, ordinary allocated)
  // blocks, and the blocks held back during its capture are freed.
  void release_pool(int id) {
    DeviceGuard guard(Device::cuda(device_));
    std::lock_guard<std::mutex> lock(mutex_);
    for (Pool* p : {&small_, &large_}) {
      std::vector<Block*> mine;
      for (Block* b : *p) {
        if (b->pool == id) mine.push_back(b);
      }
      for (Block* b : mine) {
        p->erase(b);
        b->pool = 0;
        p->insert(b);
      }
    }
    for (auto& [ptr, b] : allocated_) {
      if (b->pool == id) b->pool = 0;
    }
    for (auto& [other, blocks] : held_) {
      for (Block* b : blocks) {
        if (b->pool == id) b->pool = 0;
      }
    }
    auto it = held_.find(id);
    if (it == held_.end()) return;
    std::vector<Block*> held = std::move(it->second);
    held_.erase(it);
    for (Block* b : held) free_block(b);
  }

  void set_split(bool split) {
    std::lock_guard<std::mutex> lock(mutex_);
    split_ = split;
  }

  void record_stream(void* ptr, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = allocated_.find(ptr);
    NV_CHECK(it != allocated_.end(), "record_stream: {} is not an allocated device block", ptr);
    Block* b = it->second;
    if (stream != b->stream && std::find(b->other_streams.begin(), b->other_streams.end(),
                                         stream) == b->other_streams.end()) {
      b->other_streams.push_back(stream);
    }
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    AllocatorStats s = stats_;
    s.cached_bytes = s.reserved_bytes - s.allocated_bytes;
    s.in_use_bytes = s.allocated_bytes;
    s.peak_in_use_bytes = s.peak_allocated_bytes;
    return s;
  }

  void release() {
    DeviceGuard guard(Device::cuda(device_));
    std::lock_guard<std::mutex> lock(mutex_);
    // The blocks' last uses may still be running.
    (void)counted_stream_synchronize(current_stream());
    for (auto& [e, b] : pending_) (void)cudaEventSynchronize(e);
    process_events();
    release_free_segments();
  }

 private:
  Block* new_segment(size_t bytes, size_t size, cudaStream_t stream) {
    size_t seg = split_ ? segment_size(size) : size;
    void* ptr = nullptr;
    cudaError_t err = device_malloc(&ptr, seg);
    const size_t cached_before = stats_.reserved_bytes - stats_.allocated_bytes;
    if (err == cudaErrorMemoryAllocation) {
      // Out of memory: give the free segments back to the device and try once more, with a
      // segment of just the request if the usual one is larger (a small device).
      (void)cudaGetLastError();
      if (capture_pool_ == 0) release_free_segments();  // cudaFree would break a capture
      err = device_malloc(&ptr, seg);
      if (err == cudaErrorMemoryAllocation && seg > size) {
        (void)cudaGetLastError();
        seg = size;
        err = device_malloc(&ptr, seg);
      }
    }
    if (err != cudaSuccess) fail_allocation(err, bytes, cached_before);
    ++stats_.cuda_malloc_calls;
    ++stats_.segments;
    stats_.reserved_bytes += seg;
    stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
    Block* b = new Block();
    b->pool = capture_pool_;
    b->ptr = static_cast<char*>(ptr);
    b->size = seg;
    b->stream = stream;
    b->small = size <= kSmallRequest;
    return b;
  }

  // cudaMalloc; during a graph capture in relaxed mode: the allocation is not part of the
  // graph (its memory belongs to the graph's pool), and would otherwise invalidate the capture.
  cudaError_t device_malloc(void** ptr, size_t bytes) {
    if (capture_pool_ == 0) return cudaMalloc(ptr, bytes);
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    NV_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode), "relaxing the capture mode");
    const cudaError_t err = cudaMalloc(ptr, bytes);
    NV_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode), "restoring the capture mode");
    return err;
  }

  // Keeps `size` bytes of `block` and returns the rest to `pool` when worth it.
  void split(Block* block, size_t size, Pool& pool) {
    const size_t rest = block->size - size;
    const bool worth = block->small ? rest >= kRound : rest > kSmallRequest;
    if (!worth) return;
    Block* r = new Block();
    r->pool = block->pool;
    r->ptr = block->ptr + size;
    r->size = rest;
    r->stream = block->stream;
    r->small = block->small;
    r->prev = block;
    r->next = block->next;
    if (r->next) r->next->prev = r;
    block->next = r;
    block->size = size;
    pool.insert(r);
    ++stats_.splits;
  }

  // Back into its pool, merged with free neighbours.
  void free_block(Block* block) {
    block->allocated = false;
    Pool& pool = block->small ? small_ : large_;
    if (Block* p = block->prev; p != nullptr && !p->allocated) {
      pool.erase(p);
      p->size += block->size;
      p->next = block->next;
      if (p->next) p->next->prev = p;
      delete block;
      block = p;
    }
    if (Block* n = block->next; n != nullptr && !n->allocated) {
      pool.erase(n);
      block->size += n->size;
      block->next = n->next;
      if (block->next) block->next->prev = block;
      delete n;
    }
    pool.insert(block);
  }

  // Frees the blocks whose other-stream events have all completed.
  void process_events() {
    while (!pending_.empty()) {
      auto [e, block] = pending_.front();
      const cudaError_t q = cudaEventQuery(e);
      if (q == cudaErrorNotReady) {
        (void)cudaGetLastError();
        break;  // events complete in order of recording on their stream, near enough
      }
      NV_CUDA_CHECK(q, "querying a freed block's event");
      pending_.pop_front();
      events_.push_back(e);
      if (--block->pending_events == 0) free_block(block);
    }
  }

  cudaEvent_t take_event() {
    if (!events_.empty()) {
      cudaEvent_t e = events_.back();
      events_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    NV_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "creating an event");
    return e;
  }

  // cudaFree every free block that is a whole segment.
  void release_free_segments() {
    for (Pool* pool : {&small_, &large_}) {
      for (auto it = pool->begin(); it != pool->end();) {
        Block* b = *it;
        if (b->prev == nullptr && b->next == nullptr) {
          cudaFree(b->ptr);
          stats_.reserved_bytes -= b->size;
          --stats_.segments;
          ++stats_.cuda_free_calls;
          delete b;
          it = pool->erase(it);
        } else {
          ++it;
        }
      }
    }
  }

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
        "{:.1f} MiB were cached and free segments have been released ({:.1f} MiB still "
        "reserved), {:.1f} MiB free of {:.1f} MiB on the device",
        bytes, bytes / 1048576.0, stats_.allocated_bytes / 1048576.0, cached_before / 1048576.0,
        stats_.reserved_bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
  }

  const int device_;
  std::mutex mutex_;
  Pool small_, large_;
  std::unordered_map<void*, Block*> allocated_;
  std::deque<std::pair<cudaEvent_t, Block*>> pending_;
  std::vector<cudaEvent_t> events_;  // recorded and completed: reusable
  AllocatorStats stats_;
  bool split_ = split_by_default();
  int capture_pool_ = 0;  // the capture running now, or 0
  int next_pool_ = 1;
  std::unordered_map<int, std::vector<Block*>> held_;  // freed during capture `key`, still used
};

namespace {
// Never destroyed: tensors outlive static destructors.
CachingAllocator* instance(int device) {
  static auto* allocators = new PerDevice<CachingAllocator*>(
      [](CachingAllocator*& a) { a = new CachingAllocator(current_device()); });
  return allocators->get(device);
}
CachingAllocator* instance() {
  return instance(current_device());
}
}  // namespace

Allocator* caching_allocator() {
  return instance();
}
Allocator* caching_allocator(int device) {
  return instance(device);
}
AllocatorStats allocator_stats() {
  return instance()->stats();
}
AllocatorStats allocator_stats(int device) {
  return instance(device)->stats();
}
void release_cached_memory() {
  instance()->release();
}
void record_stream(void* ptr, cudaStream_t stream) {
  instance()->record_stream(ptr, stream);
}
void set_segment_splitting(bool split) {
  instance()->set_split(split);
}
int begin_capture_pool() {
  return instance()->begin_capture();
}
void end_capture_pool() {
  instance()->end_capture();
}
void release_capture_pool(int pool) {
  instance()->release_pool(pool);
}

}  // namespace nextvit::cuda_rt
