#pragma once
// The emulator's own API, beyond CUDA's, for tests and tools: what the last fault was, forgetting
// it (a real process would have to restart), choosing the schedules launches run under, and
// which kernels have run. Only in builds with -DNEXTVIT_CUDA=EMULATE.
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

}  // namespace nvemu
