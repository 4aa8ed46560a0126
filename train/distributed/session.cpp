#include "train/distributed/session.h"

#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "train/distributed/mpi_communicator.h"

#if NEXTVIT_WITH_MPI
#include <mpi.h>
#endif

namespace nextvit {

bool DistributedSession::built_with_mpi() {
#if NEXTVIT_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool DistributedSession::launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

namespace {
int launcher_size() {
  const char* s = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (s == nullptr) s = std::getenv("PMI_SIZE");
  return s ? std::atoi(s) : 1;
}
}  // namespace

DistributedSession::DistributedSession(bool required) {
  if (!built_with_mpi()) {
    NV_CHECK(!required,
             "--distributed: this nextvit was built without MPI (configure with -DNEXTVIT_MPI=ON "
             "after installing libopenmpi-dev and openmpi-bin)");
    NV_CHECK(launcher_size() <= 1,
             "started by mpirun with {} ranks, but this nextvit was built without MPI: each rank "
             "would train alone and overwrite the others' checkpoints (rebuild with "
             "-DNEXTVIT_MPI=ON)",
             launcher_size());
    return;
  }
#if NEXTVIT_WITH_MPI
  if (!required && !launched_by_mpirun()) return;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // Only the main thread calls MPI, but the watchdog's thread may call MPI_Abort.
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    active_ = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
#endif
}

DistributedSession::~DistributedSession() {
#if NEXTVIT_WITH_MPI
  if (active_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
#endif
}

std::shared_ptr<Communicator> DistributedSession::communicator(Device device) {
  if (size_ <= 1) return nullptr;
  if (device.is_cuda()) {
    auto nccl = detail::make_nccl_communicator(device.index);
    if (nccl) return nccl;
  }
  return detail::make_mpi_communicator();
}

void DistributedSession::abort(const std::string& message) const {
  detail::mpi_abort_job(message);
}

}  // namespace nextvit
