#pragma once
// Communicator: what data-parallel training needs from a collective library, and nothing more.
// Implementations: MpiCommunicator (mpi_communicator.cpp, OpenMPI, host memory) and
// NcclCommunicator (nccl_communicator.cpp, GPU memory, bootstrapped through MPI). Every rank
// calls the collectives in the same order (MPI's and NCCL's rule); a rank that stops calling
// them is caught by the watchdog (watchdog.h), which ends the whole job.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nextvit {

// A sum started by Communicator::start_sum, running while the caller computes.
class PendingSum {
 public:
  virtual ~PendingSum() = default;
  // Lets the library advance the transfer (MPI progresses only inside its calls); true when
  // the sum is complete. Never blocks.
  virtual bool poll() = 0;
  // Blocks until the sum is complete (bounded by the watchdog).
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string describe() const = 0;  // "MPI, 2 ranks", "NCCL over MPI, 8 ranks"

  // Whether start_sum's buffers are GPU memory (NCCL) rather than host memory (MPI).
  virtual bool device_buffers() const = 0;
  // Starts an in-place element-wise sum of `count` floats over all ranks. The buffer must stay
  // alive and untouched until the returned sum is complete.
  virtual std::unique_ptr<PendingSum> start_sum(float* data, int64_t count) = 0;
  // Blocking in-place sum of host doubles (statistics, losses, counters).
  virtual void sum(double* data, int64_t count) = 0;
  // Rank `root`'s host bytes copied to every rank.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;

  void sum(std::vector<double>& values) { sum(values.data(), int64_t(values.size())); }
};

}  // namespace nextvit
