#pragma once
// Ctrl-C and SIGTERM during training. The first signal only sets a flag: the training loop
// finishes the current step, writes a checkpoint (atomically, as every checkpoint) and returns,
// telling the user how to resume. A second signal exits at once with status 130, as a user
// pressing Ctrl-C twice expects. The handlers are installed for the lifetime of an
// InterruptGuard and the previous ones restored after.
#include <csignal>

namespace nextvit {

class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  // The signal received (SIGINT or SIGTERM), 0 when none.
  static int requested();
  // Clears the flag (tests).
  static void reset();
  // True while a guard is installed (tests wait for it before sending a signal).
  static bool active();

 private:
  struct sigaction old_int_, old_term_;
};

}  // namespace nextvit
