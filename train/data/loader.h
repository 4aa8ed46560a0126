#pragma once
// DataLoader: turns a Dataset and a Pipeline into a stream of batches
// {images: f32 (B, C, H, W), labels: i64 (B)}, built by worker threads ahead of the consumer.
//
// Determinism. Batch b of epoch e is a pure function of (seed, e, b): the epoch's order is a
// Fisher-Yates shuffle drawn from a Generator seeded by (seed, e), and each sample's
// augmentation draws from its own Generator seeded by (seed, e, dataset index). So the bytes of
// every batch are the same for any number of workers, and a run restarted with seek() at a saved
// position() continues exactly as the uninterrupted run would have.
//
// Threads. The batches form one sequence over all epochs, job j = epoch * batches_per_epoch +
// batch. Each worker takes the next unclaimed job, builds the whole batch, and files it under
// its job number; next() waits for the job it needs, so batches come out in order whichever
// worker finishes first. Workers run at most `prefetch` jobs ahead of the consumer (the bounded
// queue), and keep going across epoch boundaries. The destructor and seek() stop and join them,
// abandoning half-built batches between samples.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/tensor.h"
#include "train/data/dataset.h"
#include "train/data/transforms.h"

namespace nextvit::data {

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  bool drop_last = true;  // drop the final partial batch (else it is smaller)
  uint64_t seed = 0;
  int workers = 2;   // 0: each batch is built inside next(), on the calling thread
  int prefetch = 4;  // batches built or being built ahead of the consumer
  // Data-parallel training: this process builds only its part of each batch, rows
  // [count * shard / shards, count * (shard + 1) / shards) of the batch of `batch_size` (the
  // global batch) that one process would build. Order, augmentation and batch numbering are
  // those of the whole batch, so the union over shards is exactly the single-process batch.
  int shard = 0;
  int shards = 1;
};

struct Batch {
  Tensor images;                 // f32 (B, C, H, W), CPU
  Tensor labels;                 // i64 (B), CPU
  std::vector<int64_t> indices;  // the dataset index of each row (this shard's rows)
  int64_t epoch = 0;
  int64_t index = 0;  // batch number within the epoch
};

// Where the loader stands: `batch` is the number of batches of `epoch` already returned
// (0 <= batch <= batches_per_epoch). This is what a checkpoint stores.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
  bool operator==(const LoaderPosition& o) const { return epoch == o.epoch && batch == o.batch; }
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, std::shared_ptr<const Pipeline> pipeline,
             LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Fills `out` with the next batch of the current epoch and returns true; at the end of the
  // epoch returns false once and moves to the next epoch:
  //   while (loader.next(batch)) train_step(batch);   // one epoch
  // An error raised while building a batch (a bad image size, a dataset failure) is rethrown
  // here, for that batch, and the batch counts as consumed.
  bool next(Batch& out);

  LoaderPosition position() const { return {epoch_, batch_}; }
  // Continues from a saved position (stops the workers; they restart on the next next()).
  void seek(LoaderPosition position);

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  const LoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return *dataset_; }

  // The dataset indices in the order epoch `epoch` visits them.
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // Builds batch `batch` of `epoch` on the calling thread (what the workers run).
  Batch make_batch(int64_t epoch, int64_t batch) const;

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  // Builds a batch; returns false if `stop` was raised before it was complete.
  bool build(int64_t epoch, int64_t batch, const std::atomic<bool>* stop, Batch& out) const;
  std::shared_ptr<const std::vector<int64_t>> order_for(int64_t epoch) const;
  void start_workers(int64_t first_job);
  void stop_workers();
  void worker_loop();

  std::shared_ptr<const Dataset> dataset_;
  std::shared_ptr<const Pipeline> pipeline_;
  LoaderOptions options_;
  int64_t batches_per_epoch_ = 0;

  // Consumer position (touched only by the consuming thread).
  int64_t epoch_ = 0, batch_ = 0;

  // Shared with the workers, guarded by mutex_.
  std::mutex mutex_;
  std::condition_variable work_cv_;   // a job became claimable, or stop
  std::condition_variable ready_cv_;  // a job finished
  int64_t next_job_ = 0;              // the next job a worker will claim
  int64_t consumed_ = 0;              // the job next() waits for
  std::map<int64_t, Slot> ready_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;

  // Recent epochs' orders, shared by the workers (each epoch's is computed once).
  mutable std::mutex order_mutex_;
  mutable std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> orders_;
};

}  // namespace nextvit::data
