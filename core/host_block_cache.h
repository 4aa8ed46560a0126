#pragma once
// Large host blocks kept for reuse (the CPU allocator's path for tensors of 4 MiB and more).
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
// unmaps the oldest cached blocks as far as needed to keep live + cached bytes within their
// highest value so far, so that the peak grows only when the live bytes alone do (as with the
// C library); and the cache never holds more than host_block_cache_limit() bytes (a block
// freed beyond that is unmapped). Thread-safe. Built with AddressSanitizer, the cache is off
// (blocks come from the C library), so that overflows and use after free of large tensors are
// still caught.
#include <cstddef>

namespace nextvit {

// The CPU allocator (core/allocator.cpp) takes blocks of this size and more from here.
// Smaller blocks stay with the C library, whose heap reuses them well: with a 1 MiB threshold
// a Next-ViT-S forward at batch 1 (tensors of 0.1-3.2 MiB) faulted in ~4k pages per call and
// spent more system time, and fixing glibc's mmap threshold (mallopt) instead cost +40 MiB of
// peak memory there (bench/results/2026-12-02-cpu-cputrain-before-after.txt).
constexpr size_t kHostCacheMinBytes = size_t{4} << 20;

// A block of at least `bytes` (any size; the allocator asks for >= kHostCacheMinBytes),
// 64-byte aligned; null when the system has no memory left even after the cache was released.
void* host_block_allocate(size_t bytes);
// Returns a block from host_block_allocate; `bytes` is the size it was asked for.
void host_block_deallocate(void* ptr, size_t bytes);

struct HostBlockCacheStats {
  size_t cached_bytes = 0;  // on the free lists now
  size_t hits = 0;          // requests served from a free list
  size_t misses = 0;        // requests that mapped a fresh block
  size_t live_bytes = 0;    // handed out and not yet returned (size-class bytes)
  size_t peak_bytes = 0;    // highest live + cached so far: the most it kept resident
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
