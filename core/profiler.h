#pragma once
// Profiler: where the time of a step goes, per module and per kind of op.
//
// Code marks regions with scopes: modules (layers/*.cpp: ModuleScope, a path such as
// "features.3.e_mhsa"), ops (autograd/ops/*.cpp: OpScope with an OpKind) and, in the autograd
// engine, the backward of each recorded op (Scope with the context its forward ran in).
// Scopes nest. Every scope entry and exit is one *mark* on a timeline: a host clock reading,
// or a CUDA event recorded on the stream. The interval between two consecutive marks belongs
// to the innermost scope open during it, so time is attributed exclusively (an op inside a
// module counts for the op, not twice) and the intervals tile the step: the cells add up to
// the step time exactly, and time outside any op shows as kind None ("other"), never hidden.
//
// When no Session is active on this thread, a scope is one call (a thread-local load) and one
// branch: no clock, no allocation. Only the thread that started the session records (the kernels'
// worker threads never open scopes).
#include <cstdint>
#include <string>
#include <vector>

namespace nextvit::profiler {

enum class OpKind : uint8_t {
  None,           // inside no op: module glue, autograd bookkeeping ("other")
  GroupedConv,    // conv2d with groups > 1 (MHCA's 3x3)
  PointwiseConv,  // conv2d 1x1, groups 1 (MLP, projections, patch embedding)
  Conv,           // any other conv2d (the stem's 3x3)
  BatchNorm,      // batch_norm and the fused batch_norm_relu
  Attention,      // fused pooled attention (softmax(q k^T) v in one op)
  Softmax,
  Gemm,         // linear and matmul
  Pooling,      // average pooling (2d, 1d, global)
  Copies,       // reshape, transpose, permute, concat, contiguous() copies
  Elementwise,  // add, mul, scale, relu, drop_path, sums
  Loss,         // cross_entropy
  Count
};
constexpr int kKinds = static_cast<int>(OpKind::Count);
const char* kind_name(OpKind kind);
// The kind of a conv2d with this many groups and this kernel.
OpKind conv_kind(int64_t groups, int64_t kernel_h, int64_t kernel_w);

enum class Phase : uint8_t { Forward, Backward };

// What the time of an interval is attributed to: the innermost module (-1: none), op kind and
// phase.
struct Context {
  int32_t module = -1;
  OpKind kind = OpKind::None;
  Phase phase = Phase::Forward;
};

// Module paths, interned once per process (ids are stable and shared by all sessions).
int intern(const std::string& path);
std::string module_path(int id);  // "" for -1
int module_count();

class Session;
namespace detail {
void push(Context c);
void pop();
}  // namespace detail

// Whether a Session is active on this thread. Out of line: the thread-local it reads stays in
// profiler.cpp (an `extern thread_local` read from inline code in other libraries is what
// UBSan's null check trips on with GCC 12's TLS wrapper functions), at the cost of one call.
bool enabled();
// The context of the innermost open scope; only meaningful when enabled().
Context current();
// Adds bytes moved to the innermost scope's cell (for GB/s): ops report inputs + outputs.
void add_bytes(int64_t bytes);

// Opens a region with an explicit context (the autograd engine's backward of a node).
class Scope {
 public:
  explicit Scope(Context c) : on_(enabled()) {
    if (on_) detail::push(c);
  }
  ~Scope() {
    if (on_) detail::pop();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool on_;
};

// An op of `kind`, inside the current module and phase.
class OpScope {
 public:
  explicit OpScope(OpKind kind) : on_(enabled()) {
    if (on_) {
      Context c = current();
      c.kind = kind;
      detail::push(c);
    }
  }
  ~OpScope() {
    if (on_) detail::pop();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  bool on_;
};

// A module (by interned id; -1 opens nothing), in the current phase, outside any op.
class ModuleScope {
 public:
  explicit ModuleScope(int id) : on_(id >= 0 && enabled()) {
    if (on_) detail::push({id, OpKind::None, current().phase});
  }
  ~ModuleScope() {
    if (on_) detail::pop();
  }
  ModuleScope(const ModuleScope&) = delete;
  ModuleScope& operator=(const ModuleScope&) = delete;

 private:
  bool on_;
};

// Time, bytes and entries accumulated for one (module, kind, phase).
struct Cell {
  double ms = 0;
  int64_t bytes = 0;
  int64_t calls = 0;
};

// One recording. begin_step() activates it on this thread and marks the start; end_step()
// marks the end, deactivates, resolves the marks (waiting for the device with CUDA events) and
// adds each interval to its cell. With scopes = false it times only whole steps (the baseline
// a profiled step is compared with).
class Session {
 public:
  // Manual: time moves only by advance() (tests check the attribution with it exactly).
  enum class Clock { Host, CudaEvents, Manual };
  explicit Session(Clock clock, bool scopes = true);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void begin_step(Phase phase = Phase::Forward);
  double end_step();  // the step's milliseconds

  void advance(int64_t ns) { manual_ns_ += ns; }  // the Manual clock

  int steps() const { return steps_; }
  int64_t marks_per_step() const { return steps_ ? marks_total_ / steps_ : 0; }
  // Accumulated over all steps so far.
  Cell cell(int module, OpKind kind, Phase phase) const;
  double total_ms() const { return total_ms_; }

  // Host time of one mark (a clock reading or an event record plus the bookkeeping), from
  // `pairs` empty scopes opened and closed in a fresh session: the profiler's own cost.
  static double mark_cost_ns(Clock clock, int pairs = 2000);

 private:
  friend void detail::push(Context);
  friend void detail::pop();
  friend Context current();
  friend void add_bytes(int64_t);
  struct Mark {
    int64_t ns = 0;         // host clock
    void* event = nullptr;  // or a CUDA event
    Context after;          // who owns the interval that starts here
  };
  void mark(const Context& after);
  Cell& cell_at(const Context& c);

  Clock clock_;
  bool scopes_;
  std::vector<Context> stack_;
  std::vector<Mark> marks_;
  std::vector<void*> event_pool_;
  std::vector<Cell> cells_;  // [(module + 1) * kinds * 2 + kind * 2 + phase]
  int64_t manual_ns_ = 0;
  int steps_ = 0;
  int64_t marks_total_ = 0;
  double total_ms_ = 0;
};

}  // namespace nextvit::profiler
