#pragma once
// DataParallel: what the training loop does differently when N processes train one model, each
// on its shard of every global batch (DistributedDataParallel in PyTorch's terms).
//
//   start      every rank checks that the others run the same configuration, options and data
//              (hashes compared; a mismatch is refused on every rank), then takes rank 0's
//              parameters and buffers, so all ranks start identical.
//   backward   gradients are averaged over ranks by all-reduce in buckets of about
//              `bucket_bytes`: parameters are grouped in the reverse of their registration order
//              (roughly the order backward finishes them), a bucket's sum starts as soon as its
//              last gradient is final and every earlier bucket has started (all ranks must start
//              them in one order), and it runs while backward computes the rest. Then every rank
//              holds the same averaged gradient and takes the same optimizer step.
//   sync BN    with sync_bn, every BatchNorm computes its batch statistics over all ranks
//              (ops/sync_batch_norm.cpp); without it each rank normalises with its own shard.
//
// With a null communicator (one process) backward() is loss.backward() and sum() does nothing.
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "autograd/variable.h"
#include "layers/module.h"
#include "train/distributed/communicator.h"

namespace nextvit {

class DataParallel {
 public:
  DataParallel(std::shared_ptr<Communicator> comm, Module& model, bool sync_bn,
               int64_t bucket_bytes = int64_t(4) << 20);

  bool distributed() const { return comm_ != nullptr; }
  int rank() const { return comm_ ? comm_->rank() : 0; }
  int size() const { return comm_ ? comm_->size() : 1; }
  bool is_root() const { return rank() == 0; }

  // Refuses to go on, on every rank, unless all ranks passed the same `fingerprint` (text that
  // describes what must agree); `what` names it in the message.
  void check_same_everywhere(const std::string& what, const std::string& fingerprint);
  // Copies rank 0's parameters and buffers to the other ranks.
  void broadcast_state();
  // loss.backward(), then every parameter's gradient is the average over ranks.
  void backward(const Variable& loss);
  // Element-wise sum over ranks (losses, counts, flags).
  void sum(std::vector<double>& values);

  // Seconds this rank spent blocked in communication since construction (the part not hidden
  // behind computation), and the number of buckets.
  double communication_seconds() const { return *comm_seconds_; }
  size_t bucket_count() const { return buckets_.size(); }

  // Test hook for the fault tests: NEXTVIT_FAULT=kill:R:S | throw:R:S | hang:R:S makes rank R,
  // after step S, die by SIGKILL, raise an error, or stop communicating.
  void fault_point(int64_t step) const;

 private:
  struct Bucket {
    std::vector<Variable> params;
    std::vector<int64_t> offsets;
    Tensor buffer;  // flat f32: host memory for MPI, the device's for NCCL
    std::vector<bool> filled;
    size_t remaining = 0;
    std::unique_ptr<PendingSum> pending;
  };

  void make_buckets(const std::vector<Variable>& params, int64_t bucket_bytes, Device device);
  void gradient_ready(const Variable& leaf);
  void start_ready_buckets(bool all);
  void finish_buckets();

  std::shared_ptr<Communicator> comm_;
  Module& model_;
  std::vector<Bucket> buckets_;
  std::unordered_map<const VariableImpl*, std::pair<size_t, size_t>> slot_;  // bucket, index
  size_t next_bucket_ = 0;
  std::shared_ptr<double> comm_seconds_ = std::make_shared<double>(0.0);
  std::string fault_;
  int fault_rank_ = -1;
  int64_t fault_step_ = -1;
};

}  // namespace nextvit
