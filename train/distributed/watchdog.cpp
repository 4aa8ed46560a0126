#include "train/distributed/watchdog.h"

#include <cstdlib>

#include <fmt/format.h>

#include "core/error.h"

namespace nextvit {

Watchdog::Watchdog(double timeout_s, std::function<void(const std::string&)> abort)
    : timeout_s_(timeout_s), abort_(std::move(abort)) {
  if (timeout_s_ > 0) thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

double Watchdog::timeout_from_environment() {
  const char* s = std::getenv("NEXTVIT_DIST_TIMEOUT");
  if (s == nullptr || *s == '\0') return 300.0;
  char* end = nullptr;
  const double t = std::strtod(s, &end);
  NV_CHECK(end != s && *end == '\0' && t >= 0,
           "NEXTVIT_DIST_TIMEOUT={}: expected a number of seconds (0: no watchdog)", s);
  return t;
}

void Watchdog::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1));
    if (stop_ || what_ == nullptr) continue;
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - since_).count();
    if (waited > timeout_s_) {
      const std::string message = fmt::format(
          "no progress for {:.0f} s in {}: another rank has died or hangs; ending the job "
          "(NEXTVIT_DIST_TIMEOUT sets the limit)",
          waited, what_);
      lock.unlock();
      abort_(message);
      std::_Exit(1);  // abort_ should not return
    }
  }
}

Watchdog::Scope::Scope(Watchdog& w, const char* what) : w_(w) {
  std::lock_guard<std::mutex> lock(w_.mutex_);
  w_.what_ = what;
  w_.since_ = std::chrono::steady_clock::now();
}

Watchdog::Scope::~Scope() {
  std::lock_guard<std::mutex> lock(w_.mutex_);
  w_.what_ = nullptr;
}

}  // namespace nextvit
