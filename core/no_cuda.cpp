// The CUDA runtime services of core/, in a build without CUDA: "no device" and clear errors.
// Compiled only when NEXTVIT_WITH_CUDA is off (see CMakeLists.txt).
#include "core/cuda_graph.h"
#include "core/cuda_runtime.h"
#include "core/error.h"

namespace nextvit::cuda_rt {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  NV_FAIL(
      "{}: nextvit was built without CUDA (configure with -DNEXTVIT_CUDA=ON on a machine "
      "with the CUDA toolkit)",
      what);
}
}  // namespace

bool available() {
  return false;
}
int device_count() {
  return 0;
}
int current_device() {
  return 0;
}
void set_device(int) {
  no_cuda("selecting a CUDA device");
}
Allocator* device_allocator() {
  no_cuda("CUDA device memory");
}
Allocator* device_allocator(int) {
  no_cuda("CUDA device memory");
}
void copy_between_devices(void*, int, const void*, int, size_t) {
  no_cuda("copy between CUDA devices");
}
void copy_bytes(void*, bool, const void*, bool, size_t) {
  no_cuda("copy to/from a CUDA device");
}
void fill_f32(float*, float, int64_t) {
  no_cuda("fill on a CUDA device");
}
void memset_zero(void*, size_t) {
  no_cuda("fill on a CUDA device");
}
void strided_copy(void*, const void*, size_t, int, const int64_t*, const int64_t*, int64_t) {
  no_cuda("copy on a CUDA device");
}
void synchronize() {}
void* event_create() {
  no_cuda("CUDA event");
}
void event_destroy(void*) {}
void event_record(void*) {
  no_cuda("CUDA event");
}
void event_synchronize(void*) {
  no_cuda("CUDA event");
}
float event_elapsed_ms(void*, void*) {
  no_cuda("CUDA event");
}
int64_t host_synchronizations() {
  return 0;
}
DeviceMemoryStats device_memory_stats() {
  return {};
}
DeviceMemoryStats device_memory_stats(int) {
  return {};
}

struct Graph::State {};
Graph::Graph() = default;
Graph::~Graph() = default;
Graph::Graph(Graph&&) noexcept = default;
Graph& Graph::operator=(Graph&&) noexcept = default;
Graph Graph::capture(const std::function<void()>&) {
  no_cuda("CUDA graph capture");
}
void Graph::replay() const {
  no_cuda("CUDA graph replay");
}
bool capturing() {
  return false;
}

}  // namespace nextvit::cuda_rt
