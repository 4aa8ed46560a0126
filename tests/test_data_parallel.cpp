// DataParallel's averaging, in one process: a loopback communicator stands for N ranks that all
// computed the same gradients, so the sum is N times each gradient and the average must give it
// back exactly (N a power of two). The 2-rank runs over MPI are in tests/mpi/test_mpi.cpp.
#include <memory>
#include <vector>

#include "autograd/ops.h"
#include "core/cuda_runtime.h"
#include "layers/linear.h"
#include "test_util.h"
#include "train/distributed/data_parallel.h"

#ifdef NEXTVIT_CUDA_EMULATED
#include <nvemu.h>
#endif

using namespace nextvit;

namespace {

// Every "rank" holds the same values: a sum over `ranks` of them is a multiplication.
class LoopbackCommunicator : public Communicator {
 public:
  LoopbackCommunicator(int ranks, bool device_buffers)
      : ranks_(ranks), device_buffers_(device_buffers) {}
  int rank() const override { return 0; }
  int size() const override { return ranks_; }
  std::string describe() const override { return "loopback"; }
  bool device_buffers() const override { return device_buffers_; }
  std::unique_ptr<PendingSum> start_sum(float* data, int64_t count) override {
    ++sums_started;
    if (!device_buffers_) {
      for (int64_t i = 0; i < count; ++i) data[i] *= float(ranks_);
      return std::make_unique<Done>();
    }
    // On the device through the host: memcpys, no kernel (the launch count below is
    // DataParallel's).
    std::vector<float> host(size_t(count), 0.0f);
    cuda_rt::copy_bytes(host.data(), false, data, true, host.size() * sizeof(float));
    for (float& v : host) v *= float(ranks_);
    cuda_rt::copy_bytes(data, true, host.data(), false, host.size() * sizeof(float));
    return std::make_unique<Done>();
  }
  void sum(double* data, int64_t count) override {
    for (int64_t i = 0; i < count; ++i) data[i] *= ranks_;
  }
  void broadcast(void*, int64_t, int) override {}

  int sums_started = 0;

 private:
  struct Done : PendingSum {
    bool poll() override { return true; }
    void wait() override {}
  };
  int ranks_;
  bool device_buffers_;
};

void check_average(const Device& device) {
  Generator g(5);
  const Tensor x = test::random_tensor({6, 8}, g).to(device);
  Linear plain(8, 3), averaged(8, 3);
  Generator init(3);
  plain.reset_parameters(init);
  plain.to(device);
  averaged.weight().data().copy_(plain.weight().data().cpu());
  averaged.bias().data().copy_(plain.bias().data().cpu());
  averaged.to(device);
  auto comm = std::make_shared<LoopbackCommunicator>(4, device.is_cuda());
  DataParallel dp(comm, averaged, false);  // weight and bias in one bucket
  REQUIRE(dp.bucket_count() == 1);

  int64_t plain_launches = 0, averaged_launches = 0;
  bool counts_launches = false;
#ifdef NEXTVIT_CUDA_EMULATED
  int64_t before = nvemu::kernel_launches();
#endif
  ops::mean(plain.forward(Variable(x))).backward();
#ifdef NEXTVIT_CUDA_EMULATED
  plain_launches = nvemu::kernel_launches() - before;
  before = nvemu::kernel_launches();
#endif
  dp.backward(ops::mean(averaged.forward(Variable(x))));
#ifdef NEXTVIT_CUDA_EMULATED
  averaged_launches = nvemu::kernel_launches() - before;
  counts_launches = true;
#endif
  CHECK(comm->sums_started == 1);
  // x4 then x0.25: exact, so the average is the plain gradient bit for bit.
  CHECK(averaged.weight().grad().cpu().to_vector() == plain.weight().grad().cpu().to_vector());
  CHECK(averaged.bias().grad().cpu().to_vector() == plain.bias().grad().cpu().to_vector());
  if (device.is_cuda() && counts_launches) {
    // Beyond the plain backward: one averaging kernel per bucket (not one per gradient); the
    // copies in and out of the bucket are memcpys, not kernels.
    CHECK(averaged_launches - plain_launches == int64_t(dp.bucket_count()));
  }
}

}  // namespace

TEST_CASE("data parallel: the average over ranks gives the gradient back, on the CPU", "[train]") {
  check_average(Device::cpu());
}

TEST_CASE("cuda: data parallel averages each bucket with one kernel", "[cuda][train]") {
  if (test::skip_without_gpu()) return;
  check_average(Device::cuda());
}
