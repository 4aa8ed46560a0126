#pragma once
// Fibers: the emulated CUDA threads of a block. A fiber is a stack and a saved stack pointer;
// switching saves the callee-saved registers on the current stack and restores another
// fiber's (x86-64: a dozen instructions, no system call; elsewhere ucontext). The emulator's
// scheduler runs on the host thread's own stack and switches into one fiber at a time; a fiber
// runs its CUDA thread until the thread reaches a barrier, a warp collective or its end, then
// switches back. Fibers are created once and reused for every block of every launch.
//
// AddressSanitizer must be told when the stack changes (the __sanitizer_*_switch_fiber calls),
// or it would take the fiber's frames for an overflow of the host thread's stack.
#include <cstddef>

namespace nvemu {

class Fiber {
 public:
  using Entry = void (*)(Fiber*);
  Fiber(size_t stack_bytes, Entry entry);
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // From the scheduler (the host thread's stack): run this fiber until it yields.
  void resume();
  // From inside this fiber: give control back to the scheduler.
  void yield();

  void* user = nullptr;  // the emulated thread this fiber currently runs

  // Where a new fiber begins (on its own stack): tells the sanitizer, then calls the entry.
  static void start(Fiber* self);

 private:
  Entry entry_;
  char* mapping_ = nullptr;  // guard page + stack
  size_t mapping_bytes_ = 0;
  char* stack_ = nullptr;
  size_t stack_bytes_ = 0;
  void* sp_ = nullptr;                // the fiber's saved stack pointer while it is suspended
  void* host_sp_ = nullptr;           // the scheduler's while the fiber runs
  const void* host_stack_ = nullptr;  // the scheduler's stack, for the sanitizer
  size_t host_stack_size_ = 0;
  void* fake_stack_ = nullptr;  // AddressSanitizer's bookkeeping across a switch
  bool started_ = false;
  void* ucontext_ = nullptr;  // non-x86-64 hosts: the fiber's ucontext_t
  void* host_ucontext_ = nullptr;
};

}  // namespace nvemu
