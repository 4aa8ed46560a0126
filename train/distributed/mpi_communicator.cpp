// MpiCommunicator: the Communicator over MPI on host memory. Gradient sums are non-blocking
// (MPI_Iallreduce) so that backward keeps computing while they run; OpenMPI advances them only
// inside MPI calls, which PendingSum::poll() provides between backward ops. Every blocking wait
// runs under the watchdog.
#include "train/distributed/mpi_communicator.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "core/error.h"
#include "train/distributed/watchdog.h"

#if NEXTVIT_WITH_MPI
#include <mpi.h>
#endif

namespace nextvit::detail {

#if NEXTVIT_WITH_MPI
namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  NV_FAIL("{}: MPI error: {}", what, std::string(text, size_t(length)));
}

class MpiPendingSum final : public PendingSum {
 public:
  MpiPendingSum(MPI_Request request, Watchdog& watchdog) : request_(request), watchdog_(watchdog) {}
  ~MpiPendingSum() override {
    if (request_ != MPI_REQUEST_NULL) wait();
  }
  bool poll() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    check_mpi(MPI_Test(&request_, &done, MPI_STATUS_IGNORE), "gradient sum");
    return done != 0;
  }
  void wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    Watchdog::Scope scope(watchdog_, "a gradient all-reduce (MPI_Wait)");
    check_mpi(MPI_Wait(&request_, MPI_STATUS_IGNORE), "gradient sum");
  }

 private:
  MPI_Request request_;
  Watchdog& watchdog_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator()
      : watchdog_(Watchdog::timeout_from_environment(),
                  [](const std::string& m) { mpi_abort_job(m); }) {
    // A communicator of our own: a library using MPI_COMM_WORLD cannot mix its messages in.
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override { return fmt::format("MPI, {} ranks", size_); }
  bool device_buffers() const override { return false; }

  std::unique_ptr<PendingSum> start_sum(float* data, int64_t count) override {
    NV_CHECK(count >= 0 && count <= INT32_MAX, "MPI sum of {} values: too many for one call",
             count);
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, int(count), MPI_FLOAT, MPI_SUM, comm_, &request),
              "MPI_Iallreduce");
    return std::make_unique<MpiPendingSum>(request, watchdog_);
  }

  void sum(double* data, int64_t count) override {
    Watchdog::Scope scope(watchdog_, "an all-reduce of statistics (MPI_Allreduce)");
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, int(count), MPI_DOUBLE, MPI_SUM, comm_),
              "MPI_Allreduce");
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    Watchdog::Scope scope(watchdog_, "a broadcast (MPI_Bcast)");
    auto* p = static_cast<char*>(data);
    // MPI counts are int: large blocks go in 1 GiB pieces.
    for (int64_t done = 0; done < bytes; done += int64_t(1) << 30) {
      const int64_t n = std::min<int64_t>(bytes - done, int64_t(1) << 30);
      check_mpi(MPI_Bcast(p + done, int(n), MPI_BYTE, root, comm_), "MPI_Bcast");
    }
  }

 private:
  Watchdog watchdog_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::shared_ptr<Communicator> make_mpi_communicator() {
  return std::make_shared<MpiCommunicator>();
}

void mpi_abort_job(const std::string& message) {
  std::fprintf(stderr, "nextvit: rank %d of %d: %s\n", world_rank(), world_size(), message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

#else  // built without MPI: never called (DistributedSession is inert), but they must link

std::shared_ptr<Communicator> make_mpi_communicator() {
  NV_FAIL("this nextvit was built without MPI");
}

void mpi_abort_job(const std::string& message) {
  std::fprintf(stderr, "nextvit: %s\n", message.c_str());
  std::_Exit(1);
}

#endif

}  // namespace nextvit::detail
