// NcclCommunicator: gradients summed between the ranks' GPUs by NCCL, which MPI bootstraps
// (rank 0's ncclUniqueId broadcast) and which leaves host-side sums (statistics, losses) and
// broadcasts to MPI.
//
// Streams: a bucket's gradients are copied into its buffer on the compute stream; the sum runs
// on a stream of its own, after an event that marks the copies done, so that backward's kernels
// and the transfer overlap on the GPU. wait() makes the compute stream wait for the sum's event
// (later kernels read the result in order) and blocks the host until it is done, polling NCCL's
// asynchronous error; the watchdog bounds the wait, and on expiry aborts the NCCL communicator
// and the MPI job.
#include "train/distributed/mpi_communicator.h"

#if NEXTVIT_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include <thread>

#include <fmt/format.h>

#include "core/cuda/stream.h"
#include "core/error.h"
#include "train/distributed/watchdog.h"

namespace nextvit::detail {
namespace {

void check_nccl(ncclResult_t r, const char* what) {
  NV_CHECK(r == ncclSuccess, "{}: NCCL error: {}", what, ncclGetErrorString(r));
}
void check_cuda(cudaError_t e, const char* what) {
  NV_CHECK(e == cudaSuccess, "{}: CUDA error: {}", what, cudaGetErrorString(e));
}

class NcclPendingSum final : public PendingSum {
 public:
  NcclPendingSum(cudaEvent_t done, ncclComm_t comm, Watchdog& watchdog)
      : done_(done), comm_(comm), watchdog_(watchdog) {}
  ~NcclPendingSum() override {
    if (done_ != nullptr) {
      wait();
      cudaEventDestroy(done_);
    }
  }
  bool poll() override { return finished_ || cudaEventQuery(done_) == cudaSuccess; }
  void wait() override {
    if (finished_) return;
    Watchdog::Scope scope(watchdog_, "a gradient all-reduce (NCCL)");
    for (;;) {
      const cudaError_t e = cudaEventQuery(done_);
      if (e == cudaSuccess) break;
      NV_CHECK(e == cudaErrorNotReady, "NCCL sum: CUDA error: {}", cudaGetErrorString(e));
      ncclResult_t async = ncclSuccess;
      check_nccl(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
      check_nccl(async, "NCCL sum");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    check_cuda(cudaStreamWaitEvent(cuda_rt::current_stream(), done_, 0), "cudaStreamWaitEvent");
    finished_ = true;
  }

 private:
  cudaEvent_t done_;
  ncclComm_t comm_;
  Watchdog& watchdog_;
  bool finished_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator()
      : host_(make_mpi_communicator()),
        watchdog_(Watchdog::timeout_from_environment(), [this](const std::string& m) {
          ncclCommAbort(comm_);  // releases ranks blocked inside NCCL kernels
          mpi_abort_job(m);
        }) {
    ncclUniqueId id{};
    if (host_->rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    host_->broadcast(&id, sizeof(id), 0);
    {
      Watchdog::Scope scope(watchdog_, "NCCL initialisation (ncclCommInitRank)");
      check_nccl(ncclCommInitRank(&comm_, host_->size(), id, host_->rank()), "ncclCommInitRank");
    }
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cuda(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~NcclCommunicator() override {
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
    ncclCommDestroy(comm_);
  }
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string describe() const override {
    return fmt::format("NCCL (bootstrapped over MPI), {} ranks", size());
  }
  bool device_buffers() const override { return true; }

  std::unique_ptr<PendingSum> start_sum(float* data, int64_t count) override {
    // The sum starts after the copies into `data` queued on the compute stream.
    check_cuda(cudaEventRecord(ready_, cuda_rt::current_stream()), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
    check_nccl(ncclAllReduce(data, data, size_t(count), ncclFloat32, ncclSum, comm_, stream_),
               "ncclAllReduce");
    cudaEvent_t done = nullptr;
    check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(done, stream_), "cudaEventRecord");
    return std::make_unique<NcclPendingSum>(done, comm_, watchdog_);
  }
  void sum(double* data, int64_t count) override { host_->sum(data, count); }
  void broadcast(void* data, int64_t bytes, int root) override {
    host_->broadcast(data, bytes, root);
  }

 private:
  std::shared_ptr<Communicator> host_;  // MPI: bootstrap, host sums and broadcasts
  Watchdog watchdog_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(int) {
  return std::make_shared<NcclCommunicator>();
}

}  // namespace nextvit::detail

#else  // no NCCL in this build: CUDA ranks stage gradients through host memory and MPI

namespace nextvit::detail {

std::shared_ptr<Communicator> make_nccl_communicator(int) {
  return nullptr;
}

}  // namespace nextvit::detail

#endif
