#pragma once
// Host blocks kept for reuse (the CPU allocator's path for tensors of 256 KiB and more).
//
// Why: the C library (glibc) maps every block above 32 MiB afresh and unmaps it when freed,
// and trims its heap of smaller ones, so a forward at batch 32 (activations of 10-100 MiB)
// page-faulted its tensors back in on every call, zero-filling each 4 KiB page in the kernel
// (measured: ~560k faults and ~1 s of system time per Next-ViT-S forward at batch 32). Here a
// freed block is kept, still mapped and resident, and the next request of its size class
// takes it back without a fault. Fresh blocks are mapped 2 MiB-aligned and marked for transparent
// huge pages (MADV_HUGEPAGE), so that a first touch faults once per 2 MiB rather than per 4 KiB.
//
// Size classes: a request is rounded up to a multiple of 1/8 of its power of two (at most
// 12.5% more address space) and served by the smallest cached block of its class or of up to
// twice that (already resident: reusing it costs nothing; glibc too reuses a larger free
// area for a smaller request, where exact classes would ping-pong). A miss first
// unmaps the oldest cached blocks as far as needed to keep live + cached bytes within
// host_block_cache_bound() of the most bytes live at once so far: the peak grows only when the
// live bytes alone do, plus a slack (1/4 of them, at least 8 MiB) without which blocks of
// changing sizes would be unmapped and mapped afresh on every call; and the cache never holds
// more than host_block_cache_limit() bytes (a block freed beyond that is unmapped).
// Thread-safe. Built with AddressSanitizer, the cache is off
// (blocks come from the C library), so that overflows and use after free of large tensors are
// still caught.
#include <cstddef>

namespace nextvit {

// The CPU allocator (core/allocator.cpp) takes blocks of this size and more from here; smaller
// ones stay with the C library's heap. Measured on a Next-ViT-S forward at batch 1 (tensors of
// 0.1-3.6 MiB; bench/results/2026-12-02-cpu-zen5-*): with a 4 MiB threshold the C library
// mapped the tensors between 256 KiB and 4 MiB afresh and the forward page-faulted ~2,400
// times a call; 256 KiB with the slack of host_block_cache_bound() takes that to ~9, the step
// to 0.90x its time, with the same peak memory (169 -> 167 MB). (Without the slack a 1 MiB
// threshold faulted more, ~4k pages a call; fixing glibc's mmap threshold with mallopt instead cost
// +45 MiB of peak memory.)
constexpr size_t kHostCacheMinBytes = size_t{256} << 10;

// The least slack of host_block_cache_bound().
constexpr size_t kHostCacheMinSlack = size_t{8} << 20;

// The slack is the live peak divided by this. 1/16 left a training step (nextvit_fmnist, batch
// 128: tensors of many sizes, forward and backward) mapping fresh blocks on every step: 4.6 %
// of its cycles zero-filled new pages in the kernel. With 1/4 (2-core Zen 5, 9 alternating
// process pairs) the step took 0.92x the time (median 108.2 -> 99.0 ms), at 16 MiB more
// resident memory (212 -> 228 MiB); the Next-ViT-S forward 151 -> 158 MiB at batch 1 and
// 463 -> 539 MiB at batch 32, all still below PyTorch's (171, 617 and 369 MiB in training).
constexpr size_t kHostCacheSlackDivisor = 4;

// The most bytes the cache lets live + cached reach, given the most bytes live at once so far:
// that plus 1/kHostCacheSlackDivisor of it (at least kHostCacheMinSlack). Without the cache
// (AddressSanitizer builds), `live_peak` itself.
size_t host_block_cache_bound(size_t live_peak);

// A block of at least `bytes` (any size; the allocator asks for >= kHostCacheMinBytes),
// 64-byte aligned; null when the system has no memory left even after the cache was released.
void* host_block_allocate(size_t bytes);
// Returns a block from host_block_allocate; `bytes` is the size it was asked for.
void host_block_deallocate(void* ptr, size_t bytes);

struct HostBlockCacheStats {
  size_t cached_bytes = 0;     // on the free lists now
  size_t hits = 0;             // requests served from a free list
  size_t misses = 0;           // requests that mapped a fresh block
  size_t live_bytes = 0;       // handed out and not yet returned (size-class bytes)
  size_t live_peak_bytes = 0;  // the most bytes handed out at once so far
  size_t peak_bytes = 0;       // highest live + cached so far: the most it kept resident
};
HostBlockCacheStats host_block_cache_stats();

// Bytes the cache may hold: NEXTVIT_HOST_CACHE_MIB when set (0 turns caching off), else
// a quarter of the machine's memory, at most 4 GiB.
size_t host_block_cache_limit();
// Sets the bound (tests); frees cached blocks beyond it. Returns the previous one.
size_t set_host_block_cache_limit(size_t bytes);
// Unmaps every cached block (the memory goes back to the system).
void host_block_cache_release();

}  // namespace nextvit
