#pragma once
// Kernel launches under the emulator. core/cuda/launch.h's NV_LAUNCH expands, under nvcc,
// to kernel<<<grid, block, shared, stream>>>(args...) and here to
// nvemu::Launch(&kernel, "kernel", __FILE__, __LINE__, grid, block, shared, stream)(args...).
// Launch binds the arguments as the kernel's parameter types (one copy, as CUDA copies them to
// the device), then hands the scheduler a type-erased description: how to run one thread, and
// the argument bytes, which the checkers scan for device pointers.
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace nvemu {

struct LaunchSpec {
  const void* kernel = nullptr;  // identity, for cudaFuncSetAttribute
  const char* name = "";         // the kernel as written at the launch site
  const char* file = "";
  int line = 0;
  dim3 grid, block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
  void (*run_thread)(const void* bound) = nullptr;  // runs the kernel body for one thread
  const void* bound = nullptr;                      // the kernel and its arguments
  const void* arg_bytes = nullptr;                  // the arguments' object representation
  size_t arg_size = 0;
  const void* const* pointer_args = nullptr;  // the arguments of pointer type, by position
  int arg_count = 0;
  // A heap copy of `bound`, for a launch recorded by stream capture (graph.cpp) and run later.
  std::shared_ptr<const void> (*keep)(const void* bound) = nullptr;
};

// Runs the launch (checks, blocks, threads); errors go where CUDA puts them (the last error,
// sticky for faults).
void launch(const LaunchSpec& spec);

template <typename... P>
class Launch {
 public:
  Launch(void (*kernel)(P...), const char* name, const char* file, int line, dim3 grid, dim3 block,
         size_t shared_bytes = 0, cudaStream_t stream = nullptr)
      : kernel_(kernel) {
    spec_.kernel = reinterpret_cast<const void*>(kernel);
    spec_.name = name;
    spec_.file = file;
    spec_.line = line;
    spec_.grid = grid;
    spec_.block = block;
    spec_.shared_bytes = shared_bytes;
    spec_.stream = stream;
  }

  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong argument count");
    const Bound bound{kernel_, Args(std::forward<A>(args)...)};
    const void* pointers[sizeof...(P) + 1] = {};
    collect_pointers(bound.args, pointers, std::index_sequence_for<P...>{});
    LaunchSpec spec = spec_;
    spec.run_thread = &run_thread;
    spec.bound = &bound;
    spec.arg_bytes = &bound.args;
    spec.arg_size = sizeof(Args);
    spec.pointer_args = pointers;
    spec.arg_count = int(sizeof...(P));
    spec.keep = &keep;
    ::nvemu::launch(spec);
  }

 private:
  using Args = std::tuple<std::decay_t<P>...>;
  struct Bound {
    void (*kernel)(P...);
    Args args;
  };

  static std::shared_ptr<const void> keep(const void* bound) {
    return std::make_shared<Bound>(*static_cast<const Bound*>(bound));
  }

  static void run_thread(const void* bound) {
    const Bound* b = static_cast<const Bound*>(bound);
    std::apply(b->kernel, b->args);  // each thread gets its own copy of every parameter
  }

  template <size_t... I>
  static void collect_pointers(const Args& args, const void** out, std::index_sequence<I...>) {
    ((out[I] = pointer_or_null(std::get<I>(args))), ...);
  }
  template <typename T>
  static const void* pointer_or_null(const T& v) {
    if constexpr (std::is_pointer_v<T>) {
      return static_cast<const void*>(v);
    } else {
      return nullptr;
    }
  }

  void (*kernel_)(P...);
  LaunchSpec spec_;
};

}  // namespace nvemu
