#include "train/interrupt.h"

#include <unistd.h>

#include <atomic>

namespace nextvit {
namespace {

std::atomic<int> g_signal{0};
std::atomic<bool> g_active{false};

// Async-signal-safe: an atomic store, write(2) and _exit(2) only.
void on_signal(int sig) {
  if (g_signal.exchange(sig) != 0) {
    const char msg[] = "\nsecond interrupt: exiting now without a checkpoint\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)ignored;
    _exit(130);
  }
  const char msg[] =
      "\ninterrupt: finishing the current step and writing a checkpoint (again to exit now)\n";
  ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
  (void)ignored;
}

}  // namespace

InterruptGuard::InterruptGuard() {
  g_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int_);
  sigaction(SIGTERM, &sa, &old_term_);
  g_active = true;
}

InterruptGuard::~InterruptGuard() {
  g_active = false;
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
}

int InterruptGuard::requested() {
  return g_signal.load();
}

void InterruptGuard::reset() {
  g_signal = 0;
}

}  // namespace nextvit

namespace nextvit {
bool InterruptGuard::active() {
  return g_active.load();
}
}  // namespace nextvit
