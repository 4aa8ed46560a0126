#include "core/cuda/emulator/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define NVEMU_ASAN 1
#endif

namespace nvemu {
namespace {

void asan_start(void** fake_stack_save, const void* bottom, size_t size) {
#ifdef NVEMU_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}

void asan_finish(void* fake_stack_save, const void** bottom_old, size_t* size_old) {
#ifdef NVEMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_save, bottom_old, size_old);
#else
  (void)fake_stack_save, (void)bottom_old, (void)size_old;
#endif
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "nvemu: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

}  // namespace
}  // namespace nvemu

#if defined(__x86_64__)
// nvemu_switch_stack(void** save_sp, void* target_sp): push the callee-saved registers and the
// SSE/x87 control words on the current stack, store the stack pointer in *save_sp, load
// target_sp, pop the target's registers and return into the target. A new fiber's stack is
// laid out so that this "return" enters nvemu_fiber_trampoline with r12 = the Fiber and r13 =
// the function to call with it (see Fiber::resume).
extern "C" void nvemu_switch_stack(void** save_sp, void* target_sp);
extern "C" void nvemu_fiber_trampoline();
asm(R"(
  .pushsection .text
  .globl nvemu_switch_stack
  .type nvemu_switch_stack, @function
nvemu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size nvemu_switch_stack, .-nvemu_switch_stack

  .globl nvemu_fiber_trampoline
  .type nvemu_fiber_trampoline, @function
nvemu_fiber_trampoline:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size nvemu_fiber_trampoline, .-nvemu_fiber_trampoline
  .popsection
)");
#endif

namespace nvemu {

Fiber::Fiber(size_t stack_bytes, Entry entry) : entry_(entry) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  stack_bytes_ = (stack_bytes + page - 1) / page * page;
  mapping_bytes_ = stack_bytes_ + page;
  void* m =
      mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) die("mapping a fiber stack");
  mapping_ = static_cast<char*>(m);
  // The lowest page stays inaccessible: a kernel that overflows its stack faults there.
  if (mprotect(mapping_, page, PROT_NONE) != 0) die("protecting a fiber's guard page");
  stack_ = mapping_ + page;
}

Fiber::~Fiber() {
#if !defined(__x86_64__)
  delete static_cast<ucontext_t*>(ucontext_);
  delete static_cast<ucontext_t*>(host_ucontext_);
#endif
  munmap(mapping_, mapping_bytes_);
}

void Fiber::start(Fiber* self) {
  asan_finish(nullptr, &self->host_stack_, &self->host_stack_size_);
  self->entry_(self);
  std::fprintf(stderr, "nvemu: a fiber's entry function returned\n");
  std::abort();
}

#if defined(__x86_64__)

void Fiber::resume() {
  if (!started_) {
    // The initial frame popped by nvemu_switch_stack: control words, r15..rbp, return address.
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack_ + stack_bytes_) & ~uintptr_t(15)) - 16;
    auto* slot = reinterpret_cast<uint64_t*>(top);
    slot[-1] = reinterpret_cast<uint64_t>(&nvemu_fiber_trampoline);  // return address
    slot[-2] = 0;                                                    // rbp: ends backtraces
    slot[-3] = 0;                                                    // rbx
    slot[-4] = reinterpret_cast<uint64_t>(this);                     // r12: argument
    slot[-5] = reinterpret_cast<uint64_t>(&Fiber::start);            // r13: function
    slot[-6] = 0;                                                    // r14
    slot[-7] = 0;                                                    // r15
    const uint32_t mxcsr = 0x1F80;  // round to nearest, no flush to zero, exceptions masked
    const uint16_t fpucw = 0x037F;
    std::memcpy(&slot[-8], &mxcsr, 4);
    std::memcpy(reinterpret_cast<char*>(&slot[-8]) + 4, &fpucw, 2);
    sp_ = &slot[-8];
    started_ = true;
  }
  asan_start(&fake_stack_, stack_, stack_bytes_);
  nvemu_switch_stack(&host_sp_, sp_);
  asan_finish(fake_stack_, nullptr, nullptr);
}

void Fiber::yield() {
  void* fiber_fake = nullptr;
  asan_start(&fiber_fake, host_stack_, host_stack_size_);
  nvemu_switch_stack(&sp_, host_sp_);
  asan_finish(fiber_fake, &host_stack_, &host_stack_size_);
}

#else  // portable fallback: ucontext (a system call per switch, but correct)

namespace {
thread_local Fiber* g_starting = nullptr;
void ucontext_entry() {
  Fiber* f = g_starting;
  g_starting = nullptr;
  Fiber::start(f);
}
}  // namespace

void Fiber::resume() {
  if (ucontext_ == nullptr) {
    ucontext_ = new ucontext_t;
    host_ucontext_ = new ucontext_t;
  }
  auto* uc = static_cast<ucontext_t*>(ucontext_);
  if (!started_) {
    getcontext(uc);
    uc->uc_stack.ss_sp = stack_;
    uc->uc_stack.ss_size = stack_bytes_;
    uc->uc_link = nullptr;
    makecontext(uc, reinterpret_cast<void (*)()>(&ucontext_entry), 0);
    g_starting = this;
    started_ = true;
  }
  asan_start(&fake_stack_, stack_, stack_bytes_);
  swapcontext(static_cast<ucontext_t*>(host_ucontext_), uc);
  asan_finish(fake_stack_, nullptr, nullptr);
}

void Fiber::yield() {
  void* fiber_fake = nullptr;
  asan_start(&fiber_fake, host_stack_, host_stack_size_);
  swapcontext(static_cast<ucontext_t*>(ucontext_), static_cast<ucontext_t*>(host_ucontext_));
  asan_finish(fiber_fake, &host_stack_, &host_stack_size_);
}

#endif

}  // namespace nvemu
