#include "train/distributed/data_parallel.h"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "autograd/tensor_ops.h"
#include "core/error.h"
#include "layers/batch_norm.h"

namespace nextvit {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

void for_each_batch_norm(Module& m, const std::function<void(BatchNorm&)>& f) {
  if (auto* bn = dynamic_cast<BatchNorm*>(&m)) f(*bn);
  for (auto& [name, child] : m.children()) for_each_batch_norm(*child, f);
}

}  // namespace

DataParallel::DataParallel(std::shared_ptr<Communicator> comm, Module& model, bool sync_bn,
                           int64_t bucket_bytes)
    : comm_(std::move(comm)), model_(model) {
  if (const char* f = std::getenv("NEXTVIT_FAULT")) {
    char kind[16] = {0};
    long long step = -1;
    NV_CHECK(std::sscanf(f, "%15[a-z]:%d:%lld", kind, &fault_rank_, &step) == 3,
             "NEXTVIT_FAULT={}: expected kill|throw|hang:RANK:STEP", f);
    fault_ = kind;
    fault_step_ = step;
  }
  if (!comm_) return;
  if (sync_bn) {
    std::shared_ptr<Communicator> c = comm_;
    std::shared_ptr<double> seconds = comm_seconds_;
    for_each_batch_norm(model_, [&](BatchNorm& bn) {
      bn.set_sum_across_processes([c, seconds](std::vector<double>& v) {
        const auto t0 = Clock::now();
        c->sum(v);
        *seconds += seconds_since(t0);
      });
    });
  }
  const std::vector<Variable> params = model_.parameters();
  NV_CHECK(!params.empty(), "DataParallel: the model has no parameters");
  make_buckets(params, bucket_bytes, comm_->device_buffers() ? params[0].device() : Device::cpu());
}

void DataParallel::make_buckets(const std::vector<Variable>& params, int64_t bucket_bytes,
                                Device device) {
  // Reverse registration order: the head's gradients are final first, the stem's last.
  Bucket current;
  int64_t elements = 0;
  auto close = [&] {
    if (current.params.empty()) return;
    current.buffer = Tensor::zeros({elements}, DType::F32, device);
    current.filled.assign(current.params.size(), false);
    buckets_.push_back(std::move(current));
    current = Bucket();
    elements = 0;
  };
  for (size_t i = params.size(); i-- > 0;) {
    const Variable& p = params[i];
    slot_[p.impl()] = {buckets_.size(), current.params.size()};
    current.params.push_back(p);
    current.offsets.push_back(elements);
    elements += p.numel();
    if (elements * int64_t(sizeof(float)) >= bucket_bytes) close();
  }
  close();
}

void DataParallel::check_same_everywhere(const std::string& what, const std::string& fingerprint) {
  if (!comm_) return;
  const uint64_t mine = fnv1a(fingerprint);
  uint64_t root = mine;
  comm_->broadcast(&root, sizeof(root), 0);
  std::vector<double> differs(size_t(size()), 0.0);
  differs[size_t(rank())] = mine != root ? 1.0 : 0.0;
  comm_->sum(differs);
  std::vector<int> ranks;
  for (int r = 0; r < size(); ++r) {
    if (differs[size_t(r)] != 0) ranks.push_back(r);
  }
  NV_CHECK(ranks.empty(),
           "rank(s) {} of {} run with another {} than rank 0 (hash {:016x} here, {:016x} on rank "
           "0); every rank must be started with the same options on the same data",
           fmt::join(ranks, ", "), size(), what, mine, root);
}

void DataParallel::broadcast_state() {
  if (!comm_) return;
  auto send = [&](const Tensor& t) {
    Tensor host = t.cpu().contiguous();
    if (!host.shares_storage(t) || host.numel() == 0) host = host.clone();
    comm_->broadcast(host.raw_data(), int64_t(host.nbytes()), 0);
    t.copy_(host);
  };
  for (const Variable& p : model_.parameters()) send(p.data());
  for (auto& [name, buffer] : model_.named_buffers()) send(*buffer);
}

void DataParallel::sum(std::vector<double>& values) {
  if (!comm_) return;
  const auto t0 = Clock::now();
  comm_->sum(values);
  *comm_seconds_ += seconds_since(t0);
}

void DataParallel::backward(const Variable& loss) {
  if (!comm_) {
    loss.backward();
    return;
  }
  for (Bucket& b : buckets_) {
    b.remaining = b.params.size();
    b.filled.assign(b.params.size(), false);
    b.pending.reset();
  }
  next_bucket_ = 0;
  loss.backward_notifying([this](const Variable& leaf) { gradient_ready(leaf); });
  finish_buckets();
}

// A parameter's gradient is final: copy it into its bucket, start every bucket that is now
// complete (in bucket order), and let the running sums progress.
void DataParallel::gradient_ready(const Variable& leaf) {
  auto it = slot_.find(leaf.impl());
  if (it == slot_.end()) return;  // a leaf that is not a parameter
  Bucket& b = buckets_[it->second.first];
  const size_t k = it->second.second;
  if (b.filled[k]) return;
  const Tensor& g = leaf.grad();
  b.buffer.narrow(0, b.offsets[k], g.numel()).view(g.shape()).copy_(g);
  b.filled[k] = true;
  --b.remaining;
  start_ready_buckets(false);
  for (size_t i = 0; i < next_bucket_; ++i) buckets_[i].pending->poll();
}

void DataParallel::start_ready_buckets(bool all) {
  while (next_bucket_ < buckets_.size() && (all || buckets_[next_bucket_].remaining == 0)) {
    Bucket& b = buckets_[next_bucket_++];
    b.pending = comm_->start_sum(b.buffer.data<float>(), b.buffer.numel());
  }
}

// After backward: parameters that got no gradient (unused on every rank alike, since all ranks
// run one graph) contribute zeros; start what is left, wait, and write the averages back.
void DataParallel::finish_buckets() {
  for (Bucket& b : buckets_) {
    for (size_t k = 0; k < b.params.size(); ++k) {
      if (!b.filled[k]) b.buffer.narrow(0, b.offsets[k], b.params[k].numel()).zero_();
    }
  }
  start_ready_buckets(true);
  const auto t0 = Clock::now();
  for (Bucket& b : buckets_) b.pending->wait();
  *comm_seconds_ += seconds_since(t0);
  // The average: one scaling per bucket (one kernel on a device), then plain copies back (on a
  // device, stream-ordered memcpys). Same float operations as scaling each gradient after it.
  const float inv = 1.0f / float(size());
  for (Bucket& b : buckets_) {
    ops::scale_(b.buffer, inv);
    for (size_t k = 0; k < b.params.size(); ++k) {
      if (!b.filled[k]) continue;
      Tensor g = b.params[k].grad();
      g.copy_(b.buffer.narrow(0, b.offsets[k], g.numel()).view(g.shape()));
    }
  }
}

void DataParallel::fault_point(int64_t step) const {
  if (fault_.empty() || rank() != fault_rank_ || step != fault_step_) return;
  std::fprintf(stderr, "nextvit: rank %d: NEXTVIT_FAULT=%s at step %lld\n", rank(), fault_.c_str(),
               (long long)step);
  std::fflush(stderr);
  if (fault_ == "kill") std::raise(SIGKILL);
  if (fault_ == "hang") {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  NV_FAIL("NEXTVIT_FAULT: an error raised on rank {} at step {} (fault test)", rank(), step);
}

}  // namespace nextvit
