#pragma once
// The process's place in a data-parallel job. A DistributedSession initialises MPI when the
// program was started by mpirun (or when asked with --distributed), gives the trainer its
// Communicator, and finalises MPI when it goes. In a build without MPI it is inert, and refuses
// --distributed or a launch by mpirun with more than one rank (N copies of a single-process run
// would each train alone and overwrite one another's checkpoints).
//
// Failure: abort() prints the message with the rank and calls MPI_Abort, which makes mpirun end
// every rank; the CLI calls it for an error raised on any rank, so the others never wait for a
// rank that has given up.
#include <memory>
#include <string>

#include "core/device.h"
#include "train/distributed/communicator.h"

namespace nextvit {

class DistributedSession {
 public:
  // `required`: --distributed was given (an error when the build has no MPI).
  explicit DistributedSession(bool required);
  ~DistributedSession();
  DistributedSession(const DistributedSession&) = delete;
  DistributedSession& operator=(const DistributedSession&) = delete;

  bool active() const { return active_; }  // MPI initialised by this session
  int rank() const { return rank_; }
  int size() const { return size_; }
  // The communicator for training on `device`: MPI on the CPU, NCCL (bootstrapped through MPI)
  // on a CUDA device when built with it; null for a single process (nothing to reduce).
  std::shared_ptr<Communicator> communicator(Device device);
  // Prints "rank R of N: MESSAGE" on stderr and ends every rank of the job.
  [[noreturn]] void abort(const std::string& message) const;

  static bool built_with_mpi();
  // Whether an MPI launcher started this process (OpenMPI's or PMIx's environment).
  static bool launched_by_mpirun();

 private:
  bool active_ = false;
  int rank_ = 0, size_ = 1;
};

}  // namespace nextvit
