#pragma once
// Uploads without a host wait. cudaMemcpyAsync from pageable (ordinary) memory is not truly
// asynchronous, and the caller may reuse its buffer as soon as we return, so an upload first
// copies the bytes into a page-locked staging buffer and then queues the transfer from there on
// the stream. Each buffer carries an event recorded after its transfer; a buffer is reused only
// once its event has completed (asked with cudaEventQuery, which never waits), as PyTorch's
// pinned-memory caching allocator does.
#include <cuda_runtime.h>

#include <cstddef>

namespace nextvit::cuda_rt {

// Copies `bytes` from host memory `src` to device memory `dst`, ordered on `stream`. Returns
// once `src` may be reused; the device copy completes later, in stream order.
void upload(void* dst, const void* src, size_t bytes, cudaStream_t stream);

// Page-locked bytes held by the staging buffers (for tests and statistics).
size_t staging_bytes();

}  // namespace nextvit::cuda_rt
