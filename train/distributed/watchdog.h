#pragma once
// Watchdog: bounds the time a rank may wait in a collective. A rank that died is normally
// reported by mpirun, which then ends the others; a rank that hangs (a deadlock, a stalled
// device, a network partition) is not, and the others would wait for ever inside MPI or NCCL.
// So each blocking wait runs inside a Watchdog::Scope, and a thread checks once a second: a
// wait longer than the timeout prints which wait stalled and calls the abort function
// (MPI_Abort, which makes mpirun end every rank).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace nextvit {

class Watchdog {
 public:
  // `timeout_s` <= 0: no watchdog. `abort` must end the job; it is called from the watchdog's
  // thread with the message to print.
  Watchdog(double timeout_s, std::function<void(const std::string&)> abort);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  class Scope {
   public:
    Scope(Watchdog& w, const char* what);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Watchdog& w_;
  };

  double timeout_s() const { return timeout_s_; }
  // NEXTVIT_DIST_TIMEOUT (seconds) if set, else 300.
  static double timeout_from_environment();

 private:
  void loop();

  double timeout_s_;
  std::function<void(const std::string&)> abort_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  const char* what_ = nullptr;  // the wait in progress, or null
  std::chrono::steady_clock::time_point since_;
  std::thread thread_;
};

}  // namespace nextvit
