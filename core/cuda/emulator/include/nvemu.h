#pragma once
// The emulator's own API, beyond CUDA's, for tests and tools: what the last fault was, forgetting
// it (a real process would have to restart), choosing the schedules launches run under, and
// which kernels have run. Only in builds with -DNEXTVIT_CUDA=EMULATE.
#include <cstdint>
#include <string>
#include <vector>

namespace nvemu {

// The description of the sticky fault ("kernel softmax.cu:forward_online ...: ..."), or "".
const std::string& fault_message();
// Clears the sticky fault and the last error.
void clear_fault_for_testing();
// "forward", "reverse", "shuffle", or a comma-separated list: with two or more, every launch
// runs once per schedule and the outputs must agree bit for bit (the race check). The
// environment variable NVEMU_SCHEDULES sets the same at start-up.
void set_schedules(const std::string& list);
// "file:kernel" of every kernel launched by this process, in order of first launch.
std::vector<std::string> kernels_launched();
// Kernel launches so far, each counted once whatever the schedules (tests count what an
// operation launches: the multi-tensor optimizer steps launch one kernel for all parameters).
int64_t kernel_launches();
// How many times the host has waited for the device: cudaDeviceSynchronize,
// cudaStreamSynchronize, cudaEventSynchronize, cudaMemcpy and cudaMemset (the synchronous
// ones), cudaMemcpyAsync from the device into pageable (not cudaMallocHost) memory, cudaFree and
// cudaFreeHost, as each waits on a real GPU. Queries (cudaStreamQuery, cudaEventQuery) do not
// wait. Catches a hidden synchronisation that bypasses nextvit's own count.
int64_t host_synchronizations();
// While held, cudaEventQuery reports every recorded event as not yet complete
// (cudaErrorNotReady), as a GPU does while the work before it runs; cudaEventSynchronize still
// returns. Lets a test see what waits for an event (the allocator's cross-stream reuse).
void hold_events_for_testing(bool hold);

}  // namespace nvemu
