// The execution model: a launch runs its blocks one at a time; a block's threads run as fibers
// on the calling host thread. A fiber runs its thread until the thread reaches __syncthreads, a
// warp collective (__syncwarp, shuffles, votes) or its end, then hands control back here. So:
// - __syncthreads releases the block when every live thread waits at the same barrier; a
//   thread that exited while others wait, or threads waiting at different barriers, is a fault
//   naming the kernel and the lines (on a GPU: a hang or silent corruption);
// - a warp collective completes when every lane of its mask has arrived with the same mask and
//   operation; the last lane to arrive computes every lane's result;
// - nothing runnable while threads still wait is a deadlock, reported, never a hang;
// - the order in which runnable threads resume (and blocks run) is a schedule: forward,
//   reverse or a seeded shuffle. Between two synchronisation points a thread runs alone, so
//   two threads that touch the same memory without a barrier between them see each other's
//   writes in one order or the other depending on the schedule: the race check runs a launch
//   under several schedules and compares every byte the kernel could reach.
// After each launch the guard bytes of the allocations the kernel could reach are checked
// (out-of-bounds writes in builds without AddressSanitizer), and the kernel is recorded for the
// coverage test.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/cuda/emulator/fiber.h"
#include "core/cuda/emulator/include/nvemu.h"
#include "core/cuda/emulator/state.h"

#if defined(__SANITIZE_ADDRESS__)
#define NVEMU_ASAN 1
#endif

namespace nvemu {

const ThreadRegs* g_regs = nullptr;

namespace {

enum class State { Runnable, AtBarrier, AtCollective, Done };

// Thrown on a thread's fiber to unwind its kernel frames when the block is abandoned: by the
// thread that broke a rule, and by every other started thread when the scheduler resumes it
// once more to clean up (so that nothing the frames own is leaked).
struct Cancelled {};

struct EmuThread {
  ThreadRegs regs{};
  int linear = 0, warp = 0, lane = 0;
  State state = State::Runnable;
  const char* file = "";  // where it waits
  int line = 0;
  Collective op = Collective::Sync;  // the collective it waits in, and its operands
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int param = 0, width = 32;
  Fiber* fiber = nullptr;
  bool started = false;
};

// A warp collective some lanes have reached and others not yet.
struct Pending {
  unsigned mask = 0, arrived = 0;
  Collective op = Collective::Sync;
  const char* file = "";
  int line = 0;
};

constexpr size_t kSharedGuard = 64;
constexpr unsigned char kSharedGuardByte = 0xA5;

struct BlockRun {
  const LaunchSpec* spec = nullptr;
  std::vector<EmuThread> threads;
  std::vector<std::vector<Pending>> warps;
  unsigned char* shared = nullptr;  // dynamic shared memory (+ guard)
  EmuThread* current = nullptr;
  std::string fault;    // the broken rule, once one is
  bool cancel = false;  // unwinding every started thread after a fault
};

struct Scheduler {
  std::vector<std::unique_ptr<Fiber>> fibers;
  BlockRun* block = nullptr;
  uint64_t launches = 0;
  std::set<std::string> covered;
  std::vector<std::string> covered_in_order;
  std::map<const void*, int> race_checked;  // launches race-checked, per kernel instantiation
};

Scheduler& scheduler() {
  static Scheduler* s = new Scheduler();
  return *s;
}

const char* op_name(Collective op) {
  switch (op) {
    case Collective::Sync:
      return "__syncwarp";
    case Collective::ShflIdx:
      return "__shfl_sync";
    case Collective::ShflUp:
      return "__shfl_up_sync";
    case Collective::ShflDown:
      return "__shfl_down_sync";
    case Collective::ShflXor:
      return "__shfl_xor_sync";
    case Collective::Ballot:
      return "__ballot_sync";
    case Collective::Any:
      return "__any_sync";
    case Collective::All:
      return "__all_sync";
  }
  return "?";
}

// "kernels/cuda/softmax.cu" from whatever path the compiler was given.
std::string tree_path(const char* file) {
  const std::string f = file;
  for (const char* root : {"/kernels/", "/core/", "/tests/", "/bench/"}) {
    const size_t at = f.rfind(root);
    if (at != std::string::npos) return f.substr(at + 1);
  }
  const size_t slash = f.rfind('/');
  return slash == std::string::npos ? f : f.substr(slash + 1);
}

// "forward_registers" from "forward_registers<VPL>".
std::string base_name(const char* name) {
  std::string n = name;
  const size_t cut = n.find_first_of("<( ");
  if (cut != std::string::npos) n.resize(cut);
  const size_t scope = n.rfind("::");
  return scope == std::string::npos ? n : n.substr(scope + 2);
}

std::string where(const char* file, int line) {
  return tree_path(file) + ":" + std::to_string(line);
}

std::string describe_launch(const LaunchSpec& s) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), " (launched at %s, grid (%u, %u, %u), block (%u, %u, %u))",
                where(s.file, s.line).c_str(), s.grid.x, s.grid.y, s.grid.z, s.block.x, s.block.y,
                s.block.z);
  return "kernel " + std::string(s.name) + buf;
}

std::string thread_name(const EmuThread& t) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "thread (%u, %u, %u) of block (%u, %u, %u)", t.regs.thread_idx.x,
                t.regs.thread_idx.y, t.regs.thread_idx.z, t.regs.block_idx.x, t.regs.block_idx.y,
                t.regs.block_idx.z);
  return buf;
}

BlockRun& running_block(const char* what) {
  BlockRun* b = scheduler().block;
  if (b == nullptr || b->current == nullptr) {
    std::fprintf(stderr, "nvemu: %s called outside a kernel\n", what);
    std::abort();
  }
  return *b;
}

// Called on the faulting thread's fiber: record the rule it broke and unwind the thread.
[[noreturn]] void thread_fault(BlockRun& b, const std::string& what) {
  if (b.fault.empty()) b.fault = thread_name(*b.current) + ": " + what;
  throw Cancelled{};
}

// After a thread resumes from a wait: unwind if its block is being abandoned.
void continue_or_unwind(const BlockRun& b) {
  if (b.cancel) throw Cancelled{};
}

void fiber_main(Fiber* f) {
  for (;;) {
    EmuThread* t = static_cast<EmuThread*>(f->user);
    BlockRun& b = *scheduler().block;
    try {
      b.spec->run_thread(b.spec->bound);
    } catch (const Cancelled&) {
      // The fault is recorded already; the kernel's frames are unwound.
    } catch (const std::exception& e) {
      if (b.fault.empty()) b.fault = thread_name(*t) + ": exception in kernel: " + e.what();
    } catch (...) {
      if (b.fault.empty()) b.fault = thread_name(*t) + ": exception in kernel";
    }
    t->state = State::Done;
    f->yield();
  }
}

Fiber* fiber_for(size_t i) {
  Scheduler& s = scheduler();
  while (s.fibers.size() <= i) {
    s.fibers.push_back(std::make_unique<Fiber>(options().stack_bytes, &fiber_main));
  }
  return s.fibers[i].get();
}

void run_thread_until_it_yields(BlockRun& b, EmuThread& t) {
  t.started = true;
  b.current = &t;
  g_regs = &t.regs;
  t.fiber->resume();
  g_regs = nullptr;
  b.current = nullptr;
}

std::vector<int> order_of(int n, Order order, std::mt19937_64& rng) {
  std::vector<int> idx(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) idx[size_t(i)] = order == Order::Reverse ? n - 1 - i : i;
  if (order == Order::Shuffle) std::shuffle(idx.begin(), idx.end(), rng);
  return idx;
}

// Every live thread waits at a barrier: release them if that is legal.
bool release_barrier(BlockRun& b) {
  const EmuThread* first = nullptr;
  const EmuThread* exited = nullptr;
  int waiting = 0;
  for (const EmuThread& t : b.threads) {
    if (t.state == State::Done) {
      exited = &t;
      continue;
    }
    ++waiting;
    if (first == nullptr) {
      first = &t;
    } else if (t.file != first->file || t.line != first->line) {
      b.fault = "divergent __syncthreads: " + thread_name(*first) + " waits at " +
                where(first->file, first->line) + ", " + thread_name(t) + " at " +
                where(t.file, t.line);
      return false;
    }
  }
  if (exited != nullptr) {
    b.fault = "__syncthreads at " + where(first->file, first->line) + " reached by " +
              std::to_string(waiting) + " of " + std::to_string(b.threads.size()) +
              " threads: " + thread_name(*exited) + " had already exited (a barrier must be " +
              "reached by every thread of the block)";
    return false;
  }
  for (EmuThread& t : b.threads) t.state = State::Runnable;
  return true;
}

void describe_deadlock(BlockRun& b) {
  std::string s = "deadlock: no thread can run;";
  int shown = 0;
  for (const EmuThread& t : b.threads) {
    if (t.state == State::Done || shown == 4) continue;
    ++shown;
    s += " " + thread_name(t) + " waits at " +
         (t.state == State::AtBarrier ? std::string("__syncthreads") : op_name(t.op)) + " (" +
         where(t.file, t.line) + ")" +
         (t.state == State::AtCollective ? " for lanes of mask " : "");
    if (t.state == State::AtCollective) {
      char m[16];
      std::snprintf(m, sizeof(m), "0x%08x", t.mask);
      s += m;
    }
    s += ";";
  }
  b.fault = s;
}

void run_block(BlockRun& b, uint3 block_idx, Order order, std::mt19937_64& rng) {
  const LaunchSpec& s = *b.spec;
  const int n = int(s.block.x * s.block.y * s.block.z);
  for (int i = 0; i < n; ++i) {
    EmuThread& t = b.threads[size_t(i)];
    t = EmuThread();
    t.regs.thread_idx = {unsigned(i) % s.block.x, unsigned(i) / s.block.x % s.block.y,
                         unsigned(i) / (s.block.x * s.block.y)};
    t.regs.block_idx = block_idx;
    t.regs.block_dim = s.block;
    t.regs.grid_dim = s.grid;
    t.linear = i;
    t.warp = i / 32;
    t.lane = i % 32;
    t.fiber = fiber_for(size_t(i));
    t.fiber->user = &t;
  }
  for (auto& w : b.warps) w.clear();
  if (b.shared != nullptr && options().poison) std::memset(b.shared, 0xFF, s.shared_bytes);

  while (b.fault.empty()) {
    std::vector<int> runnable;
    for (int i : order_of(n, order, rng)) {
      if (b.threads[size_t(i)].state == State::Runnable) runnable.push_back(i);
    }
    if (runnable.empty()) {
      bool all_done = true, all_at_barrier = true;
      for (const EmuThread& t : b.threads) {
        all_done = all_done && t.state == State::Done;
        all_at_barrier = all_at_barrier && (t.state == State::Done || t.state == State::AtBarrier);
      }
      if (all_done) break;
      if (!all_at_barrier) {
        describe_deadlock(b);
        break;
      }
      if (!release_barrier(b)) break;
      continue;
    }
    for (int i : runnable) {
      if (!b.fault.empty()) break;
      EmuThread& t = b.threads[size_t(i)];
      if (t.state == State::Runnable) run_thread_until_it_yields(b, t);
    }
  }
  if (!b.fault.empty()) {
    // The block is abandoned mid-flight: each started thread resumes once more and unwinds.
    b.cancel = true;
    for (EmuThread& t : b.threads) {
      if (t.state != State::Done && t.started) run_thread_until_it_yields(b, t);
      t.state = State::Done;
    }
    b.cancel = false;
  }
  if (b.shared != nullptr && b.fault.empty()) {
    for (size_t i = 0; i < kSharedGuard; ++i) {
      if (b.shared[s.shared_bytes + i] != kSharedGuardByte) {
        b.fault = "wrote past the end of its " + std::to_string(s.shared_bytes) +
                  " bytes of dynamic shared memory (byte " + std::to_string(i) + " beyond)";
        break;
      }
    }
  }
}

// Runs every block of the launch under one schedule. Returns the fault, or "".
std::string run_grid(const LaunchSpec& s, Order order, uint64_t launch_seed) {
  std::mt19937_64 rng(options().seed * 0x9E3779B97F4A7C15ull + launch_seed);
  BlockRun b;
  b.spec = &s;
  const int n = int(s.block.x * s.block.y * s.block.z);
  b.threads.resize(size_t(n));
  b.warps.resize(size_t((n + 31) / 32));
  std::unique_ptr<unsigned char, void (*)(void*)> shared(nullptr, &std::free);
  if (s.shared_bytes > 0) {
    void* p = nullptr;
    if (posix_memalign(&p, 16, s.shared_bytes + kSharedGuard) != 0) std::abort();
    shared.reset(static_cast<unsigned char*>(p));
    b.shared = shared.get();
    std::memset(b.shared + s.shared_bytes, kSharedGuardByte, kSharedGuard);
  }
  Scheduler& sc = scheduler();
  sc.block = &b;
  const uint64_t blocks = uint64_t(s.grid.x) * s.grid.y * s.grid.z;
  // Shuffled block order: k -> (a k + c) mod blocks with a coprime to blocks, a permutation
  // that needs no table however large the grid.
  uint64_t a = 1, c = 0;
  if (order == Order::Shuffle && blocks > 1) {
    do {
      a = rng() % blocks;
    } while (a == 0 || std::gcd(a, blocks) != 1);
    c = rng() % blocks;
  }
  for (uint64_t k = 0; k < blocks && b.fault.empty(); ++k) {
    uint64_t lin = k;
    if (order == Order::Reverse) lin = blocks - 1 - k;
    if (order == Order::Shuffle)
      lin = static_cast<uint64_t>((unsigned __int128)(a)*k % blocks + c) % blocks;
    const uint3 idx{unsigned(lin % s.grid.x), unsigned(lin / s.grid.x % s.grid.y),
                    unsigned(lin / (uint64_t(s.grid.x) * s.grid.y))};
    run_block(b, idx, order, rng);
  }
  sc.block = nullptr;
  return b.fault;
}

const char* order_name(Order o) {
  return o == Order::Forward ? "forward" : (o == Order::Reverse ? "reverse" : "shuffle");
}

void record_coverage(const LaunchSpec& s) {
  Scheduler& sc = scheduler();
  const std::string key = tree_path(s.file) + ":" + base_name(s.name);
  if (!sc.covered.insert(key).second) return;
  sc.covered_in_order.push_back(key);
  const std::string& path = options().coverage_file;
  if (path.empty()) return;
  const int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) return;
  const std::string line = key + "\n";
  if (write(fd, line.data(), line.size()) < 0) {
    // Coverage is best-effort bookkeeping; the coverage test reports what is missing.
  }
  close(fd);
}

cudaError_t check_configuration(const LaunchSpec& s) {
  const dim3 b = s.block, g = s.grid;
  if (b.x == 0 || b.y == 0 || b.z == 0 || b.x > 1024 || b.y > 1024 || b.z > 64 ||
      uint64_t(b.x) * b.y * b.z > 1024) {
    return cudaErrorInvalidConfiguration;
  }
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
    return cudaErrorInvalidConfiguration;
  }
  if (s.shared_bytes > size_t(max_dynamic_shared_bytes(s.kernel))) return cudaErrorInvalidValue;
  if (!valid_stream(s.stream)) return cudaErrorInvalidResourceHandle;
  // CUDA: "a kernel launch will fail if it is issued to a stream that is not associated to the
  // current device".
  if (stream_device(s.stream) != current_device()) return cudaErrorInvalidResourceHandle;
  return cudaSuccess;
}

std::string check_pointer_arguments(const LaunchSpec& s) {
  for (int i = 0; i < s.arg_count; ++i) {
    const void* p = s.pointer_args[i];
    if (p != nullptr && find_allocation(p, 0) == nullptr) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%p", p);
      return "argument " + std::to_string(i) + " (" + buf +
             ") is not device memory: a host pointer, or memory already freed";
    }
  }
  return {};
}

struct Snapshot {
  const Allocation* allocation;
  std::vector<unsigned char> bytes;
};

std::vector<Snapshot> snapshot(const std::vector<const Allocation*>& reached) {
  std::vector<Snapshot> out;
  for (const Allocation* a : reached) {
    Snapshot s{a, std::vector<unsigned char>(a->bytes)};
    raw_copy(s.bytes.data(), a->base, a->bytes);
    out.push_back(std::move(s));
  }
  return out;
}

void restore(const std::vector<Snapshot>& snaps) {
  for (const Snapshot& s : snaps) raw_copy(s.allocation->base, s.bytes.data(), s.bytes.size());
}

// "" when the memory equals the snapshot, else where it first differs.
std::string compare(const std::vector<Snapshot>& expected, Order a, Order b) {
  for (const Snapshot& s : expected) {
    size_t at = 0;
    if (raw_equal(s.bytes.data(), s.allocation->base, s.bytes.size(), &at)) continue;
    float fa = 0.0f, fb = 0.0f;
    const size_t word = at / 4 * 4;
    if (word + 4 <= s.bytes.size()) {
      std::memcpy(&fa, s.bytes.data() + word, 4);
      raw_copy(&fb, s.allocation->base + word, 4);
    }
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "race: results differ between the %s and %s schedules in allocation #%" PRIu64
                  " (%zu bytes) at byte %zu (as float %zu: %.9g vs %.9g); threads or blocks "
                  "read memory that others write without a barrier between them, or add in a "
                  "schedule-dependent order",
                  order_name(a), order_name(b), s.allocation->id, s.bytes.size(), at, word / 4,
                  double(fa), double(fb));
    return buf;
  }
  return {};
}

}  // namespace

namespace {
// Stream capture (graph.cpp): the launch becomes a node holding copies of its arguments, its
// pointer arguments checked now (a real capture checks the launch when it is made), and runs
// through launch() on the graph's stream at each cudaGraphLaunch.
void record_launch(const LaunchSpec& s) {
  if (std::string bad = check_pointer_arguments(s); !bad.empty()) {
    fault(cudaErrorIllegalAddress, describe_launch(s) + " (captured): " + bad);
    return;
  }
  std::shared_ptr<const void> held = s.keep(s.bound);
  const ptrdiff_t args_at =
      static_cast<const char*>(s.arg_bytes) - static_cast<const char*>(s.bound);
  auto pointers =
      std::make_shared<std::vector<const void*>>(s.pointer_args, s.pointer_args + s.arg_count);
  LaunchSpec kept = s;
  kept.bound = held.get();
  kept.arg_bytes = static_cast<const char*>(held.get()) + args_at;
  kept.pointer_args = pointers->data();
  set_error(record(s.stream, describe_launch(s), [kept, held, pointers](cudaStream_t stream) {
    LaunchSpec run = kept;
    run.stream = stream;
    launch(run);
  }));
}
}  // namespace

void launch(const LaunchSpec& s) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (cudaError_t e = sticky_error()) {
    set_error(e);
    return;
  }
  if (cudaError_t e = check_configuration(s)) {
    set_error(e);
    return;
  }
  Scheduler& sc = scheduler();
  if (sc.block != nullptr) {
    fault(cudaErrorLaunchFailure, describe_launch(s) + ": launched from inside a kernel");
    return;
  }
  if (capturing(s.stream)) {
    record_launch(s);
    return;
  }
  record_coverage(s);
  const uint64_t launch_seed = ++sc.launches;
  if (std::string bad = check_pointer_arguments(s); !bad.empty()) {
    fault(cudaErrorIllegalAddress, describe_launch(s) + ": " + bad);
    return;
  }
  const std::vector<const Allocation*> reached = allocations_reached(s.arg_bytes, s.arg_size);
  if (std::string bad = foreign_memory(reached, current_device()); !bad.empty()) {
    fault(cudaErrorIllegalAddress, describe_launch(s) + ": " + bad);
    return;
  }
  std::vector<Order> orders = options().schedules;
  // NVEMU_RACECHECK_LIMIT=N: each kernel instantiation is race-checked on its first N launches
  // and then runs once per launch (most launches repeat a kernel on other data).
  if (orders.size() > 1 && options().racecheck_limit > 0 &&
      sc.race_checked[s.kernel]++ >= options().racecheck_limit) {
    orders.resize(1);
  }
  std::vector<Snapshot> before, after_first;
  if (orders.size() > 1) before = snapshot(reached);
  for (size_t k = 0; k < orders.size(); ++k) {
    if (k > 0) restore(before);
    std::string f = run_grid(s, orders[k], launch_seed);
    if (f.empty() && k > 0) f = compare(after_first, orders[0], orders[k]);
    if (!f.empty()) {
      if (orders.size() > 1) f += std::string(" [schedule ") + order_name(orders[k]) + "]";
      fault(cudaErrorLaunchFailure, describe_launch(s) + ": " + f);
      return;
    }
    if (k == 0 && orders.size() > 1) after_first = snapshot(reached);
  }
  for (const Allocation* a : reached) {
    const std::string broken = check_guards(*a);
    if (!broken.empty()) {
      fault(cudaErrorIllegalAddress, describe_launch(s) + ": out-of-bounds write: " + broken);
      return;
    }
  }
}

void block_barrier(const char* file, int line) {
  BlockRun& b = running_block("__syncthreads");
  EmuThread* t = b.current;
  t->state = State::AtBarrier;
  t->file = file;
  t->line = line;
  t->fiber->yield();
  continue_or_unwind(b);
}

void* dynamic_shared_memory() {
  return running_block("dynamic shared memory").shared;
}

void trap(const char* file, int line) {
  BlockRun& b = running_block("__trap");
  thread_fault(b, "__trap() at " + where(file, line));
}

namespace {

// The lane `t` reads in a shuffle, by CUDA's rules for width segments.
int source_lane(const EmuThread& t) {
  const int w = t.width, seg = t.lane / w * w;
  switch (t.op) {
    case Collective::ShflIdx:
      return seg + ((t.param % w) + w) % w;
    case Collective::ShflUp:
      return t.lane - t.param < seg ? t.lane : t.lane - t.param;
    case Collective::ShflDown:
      return t.lane + t.param >= seg + w ? t.lane : t.lane + t.param;
    case Collective::ShflXor: {
      const int src = t.lane ^ t.param;
      return src >= seg + w || src > 31 ? t.lane : src;
    }
    default:
      return t.lane;
  }
}

// The last lane of a collective arrived: every lane's result, then release them.
void complete(BlockRun& b, int warp, const Pending& p) {
  EmuThread* lanes = &b.threads[size_t(warp) * 32];
  uint64_t ballot = 0;
  bool any = false, all = true;
  for (int l = 0; l < 32; ++l) {
    if (!(p.mask >> l & 1u)) continue;
    const bool pred = lanes[l].value != 0;
    ballot |= uint64_t(pred) << l;
    any = any || pred;
    all = all && pred;
  }
  for (int l = 0; l < 32; ++l) {
    if (!(p.mask >> l & 1u)) continue;
    EmuThread& t = lanes[l];
    switch (p.op) {
      case Collective::Sync:
        t.result = 0;
        break;
      case Collective::Ballot:
        t.result = ballot;
        break;
      case Collective::Any:
        t.result = any;
        break;
      case Collective::All:
        t.result = all;
        break;
      default: {
        const int src = source_lane(t);
        if (!(p.mask >> src & 1u)) {
          b.fault = thread_name(t) + ": " + op_name(p.op) + " at " + where(p.file, p.line) +
                    " reads lane " + std::to_string(src) + ", which is not in the mask";
          return;
        }
        t.result = lanes[src].value;
      }
    }
    if (t.state == State::AtCollective) t.state = State::Runnable;
  }
}

}  // namespace

uint64_t warp_collective(Collective op, unsigned mask, uint64_t value, int param, int width,
                         const char* file, int line) {
  BlockRun& b = running_block(op_name(op));
  EmuThread* t = b.current;
  const int n = int(b.threads.size());
  const int lanes_here = std::min(32, n - t->warp * 32);
  const unsigned existing = lanes_here == 32 ? 0xffffffffu : (1u << lanes_here) - 1;
  // Built only for a message: a shuffle is called millions of times.
  auto at = [&] { return std::string(op_name(op)) + " at " + where(file, line); };
  if (!(mask >> t->lane & 1u)) thread_fault(b, at() + ": the mask does not include the caller");
  if (mask & ~existing) {
    thread_fault(b, at() + ": the mask names lanes that do not exist (the warp has " +
                        std::to_string(lanes_here) + " threads)");
  }
  if (width < 1 || width > 32 || (width & (width - 1))) {
    thread_fault(b, at() + ": width " + std::to_string(width) + " is not a power of two <= 32");
  }
  std::vector<Pending>& pending = b.warps[size_t(t->warp)];
  Pending* group = nullptr;
  for (Pending& p : pending) {
    if (p.mask == mask) {
      group = &p;
    } else if (p.mask & mask) {
      thread_fault(b, at() + ": lanes with overlapping masks wait at different collectives");
    }
  }
  if (group == nullptr) {
    pending.push_back(Pending{mask, 0, op, file, line});
    group = &pending.back();
  } else if (group->op != op || group->file != file || group->line != line) {
    thread_fault(b, at() + ": other lanes of the mask wait at " + op_name(group->op) + " at " +
                        where(group->file, group->line) + " (divergent warp collective)");
  }
  t->op = op;
  t->mask = mask;
  t->value = value;
  t->param = param;
  t->width = width;
  t->file = file;
  t->line = line;
  group->arrived |= 1u << t->lane;
  if (group->arrived == mask) {
    const Pending done = *group;
    pending.erase(pending.begin() + (group - pending.data()));
    complete(b, t->warp, done);
    if (!b.fault.empty()) thread_fault(b, b.fault);
    return t->result;
  }
  t->state = State::AtCollective;
  t->fiber->yield();
  continue_or_unwind(b);
  return t->result;
}

std::vector<std::string> kernels_launched() {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  return scheduler().covered_in_order;
}

int64_t kernel_launches() {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  return static_cast<int64_t>(scheduler().launches);
}

}  // namespace nvemu
