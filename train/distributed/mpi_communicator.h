#pragma once
// Internal to train/distributed/: the communicators' factories, declared without <mpi.h> so
// that only their .cpp files see MPI.
#include <memory>

#include "train/distributed/communicator.h"

namespace nextvit::detail {

// Over MPI_COMM_WORLD (duplicated), host buffers; waits bounded by a watchdog.
std::shared_ptr<Communicator> make_mpi_communicator();
// NCCL between the ranks' GPUs, its unique id broadcast over MPI; null in builds without NCCL.
std::shared_ptr<Communicator> make_nccl_communicator(int device_index);
// Ends every rank of the job (MPI_Abort) after printing `message` with this rank's number.
[[noreturn]] void mpi_abort_job(const std::string& message);

}  // namespace nextvit::detail
