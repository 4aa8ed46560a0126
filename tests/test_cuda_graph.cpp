// Issue 10 item 7: the eval forward captured in a CUDA graph and replayed (core/cuda_graph.h,
// models/captured_forward.h), and, in the emulated build, the emulator's stream capture holding
// to CUDA's rules (core/cuda/emulator/graph.cpp). Named "cuda: ..." (skipped without a device).
#include <cstring>
#include <memory>

#include "core/cuda_graph.h"
#include "core/cuda_runtime.h"
#include "models/captured_forward.h"
#include "test_util.h"

#ifdef NEXTVIT_CUDA_EMULATED
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/cuda/emulator/include/nvemu.h"
#include "core/cuda/launch.h"
#endif

using namespace nextvit;

namespace {

NextViTConfig small_config() {
  NextViTConfig c = test::reduced_config("graph_test", 3, 10);
  c.sr_ratios = {4, 2, 2, 1};
  c.drop_path = 0.0f;
  return c;
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("cuda: a replayed forward graph equals the eager forward bit for bit on new inputs",
          "[cuda][graph]") {
  if (!cuda_available()) return;
  NextViT model(small_config(), 5);
  model.to(Device::cuda());
  model.eval();
  const Tensor x1 = test::seeded_tensor({1, 3, 32, 32}, 1),
               x2 = test::seeded_tensor({1, 3, 32, 32}, 2);
  NoGradGuard no_grad;
  const Tensor eager1 = model.forward(Variable(x1.to(Device::cuda()))).data().cpu();

  CapturedForward captured(model, x1.shape());
  // An eager forward while the graph exists: its tensors must not share the graph's memory
  // (the private pool), or the replays below would overwrite them.
  const Tensor eager2_device = model.forward(Variable(x2.to(Device::cuda()))).data();

  const int64_t syncs = cuda_rt::host_synchronizations();
  const Tensor& out = captured.run(x1);
  REQUIRE(cuda_rt::host_synchronizations() == syncs);  // the copy in and the replay: no wait
  REQUIRE(bit_identical(out.cpu(), eager1));
  REQUIRE(cuda_rt::host_synchronizations() == syncs + 1);  // the read-back
  const Tensor replay2 = captured.run(x2).cpu();
  REQUIRE(bit_identical(eager2_device.cpu(), replay2));
  REQUIRE(!bit_identical(replay2, eager1));
  REQUIRE_THROWS_WITH(captured.run(test::seeded_tensor({2, 3, 32, 32}, 3)),
                      Catch::Contains("differs from the captured shape"));
}

TEST_CASE("cuda: a host synchronisation inside a graph capture is refused", "[cuda][graph]") {
  if (!cuda_available()) return;
  const Tensor a = Tensor::zeros({64}, DType::F32, Device::cuda());
  const int64_t syncs = cuda_rt::host_synchronizations();
  REQUIRE_THROWS_WITH(
      cuda_rt::Graph::capture([&] {
        a.fill_(2.0f);
        (void)a.cpu();  // a read to the host waits for the device
      }),
      Catch::Contains("CUDA graph capture failed") && Catch::Contains("host synchronisation"));
  REQUIRE_THROWS_WITH(cuda_rt::Graph::capture([] { cuda_rt::synchronize(); }),
                      Catch::Contains("inside a CUDA graph capture"));
  REQUIRE(cuda_rt::host_synchronizations() == syncs);
  REQUIRE_FALSE(cuda_rt::capturing());
  // The stream left capture mode: eager work runs again, and the fill captured above never ran.
  REQUIRE(a.cpu().to_vector()[0] == 0.0f);
  a.fill_(3.0f);
  REQUIRE(a.cpu().to_vector()[63] == 3.0f);
  // A graph of a fill: nothing runs until it is replayed.
  cuda_rt::Graph g = cuda_rt::Graph::capture([&] { a.fill_(7.0f); });
  REQUIRE(a.cpu().to_vector()[0] == 3.0f);
  g.replay();
  REQUIRE(a.cpu().to_vector()[0] == 7.0f);
}

TEST_CASE("cuda: memory a graph uses is not handed to other work while the graph exists",
          "[cuda][graph]") {
  if (!cuda_available()) return;
  // A block allocated and freed inside the capture belongs to the graph's pool: a replay writes
  // it again.
  const float* inside = nullptr;
  cuda_rt::Graph g = cuda_rt::Graph::capture([&] {
    Tensor t = Tensor::empty({1000}, DType::F32, Device::cuda());
    t.fill_(1.0f);
    inside = t.data<float>();
  });
  const Tensor after = Tensor::empty({1000}, DType::F32, Device::cuda());
  REQUIRE(after.data<float>() != inside);
  // A block allocated before the capture and freed during it: a replay still writes it.
  auto before = std::make_shared<Tensor>(Tensor::empty({1500}, DType::F32, Device::cuda()));
  const float* before_ptr = before->data<float>();
  cuda_rt::Graph g2 = cuda_rt::Graph::capture([&] {
    before->fill_(2.0f);
    before.reset();  // the last reference: freed inside the capture
  });
  const Tensor again = Tensor::empty({1500}, DType::F32, Device::cuda());
  REQUIRE(again.data<float>() != before_ptr);
  g2.replay();
  g.replay();
  again.fill_(5.0f);
  REQUIRE(again.cpu().to_vector()[0] == 5.0f);
}

#ifdef NEXTVIT_CUDA_EMULATED
namespace {
__global__ void add_one_kernel(float* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}
}  // namespace

TEST_CASE(
    "emulator: stream capture records launches, copies and cuBLAS calls, and replay runs them",
    "[cuda][graph][emulator]") {
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  float *x = nullptr, *c = nullptr, *host = nullptr;
  REQUIRE(cudaMalloc(&x, 4 * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMalloc(&c, sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMallocHost(reinterpret_cast<void**>(&host), 4 * sizeof(float)) == cudaSuccess);
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS);
  for (int i = 0; i < 4; ++i) host[i] = float(i);

  REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  cudaStreamCaptureStatus status{};
  REQUIRE(cudaStreamIsCapturing(s, &status) == cudaSuccess);
  REQUIRE(status == cudaStreamCaptureStatusActive);
  REQUIRE(cudaMemcpyAsync(x, host, 4 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  NV_LAUNCH(1, 4, 0, s, add_one_kernel)(x, 4);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  const float one = 1.0f, zero = 0.0f;  // c = x . x (1 x 4 times 4 x 1)
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 4, &one, x, 1, x, 4, &zero, c, 1) ==
          CUBLAS_STATUS_SUCCESS);
  cudaGraph_t graph = nullptr;
  REQUIRE(cudaStreamEndCapture(s, &graph) == cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  REQUIRE(cudaGraphDestroy(graph) == cudaSuccess);

  float got = 0;
  for (float base : {0.0f, 10.0f}) {  // the copy reads the page-locked buffer at each launch
    for (int i = 0; i < 4; ++i) host[i] = base + float(i);
    REQUIRE(cudaGraphLaunch(exec, s) == cudaSuccess);
    REQUIRE(cudaMemcpy(&got, c, sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
    float want = 0;
    for (int i = 0; i < 4; ++i) want += (base + i + 1) * (base + i + 1);
    REQUIRE(got == want);
  }
  REQUIRE(cudaGraphExecDestroy(exec) == cudaSuccess);
  REQUIRE(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaFreeHost(host) == cudaSuccess);
  REQUIRE(cudaFree(x) == cudaSuccess);
  REQUIRE(cudaFree(c) == cudaSuccess);
  REQUIRE(cudaStreamDestroy(s) == cudaSuccess);
}

TEST_CASE("emulator: waits and unsafe calls during capture invalidate it, as CUDA's rules say",
          "[cuda][graph][emulator]") {
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  const int64_t waits = nvemu::host_synchronizations();
  // A synchronisation of the capturing stream.
  REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported);
  REQUIRE(std::string(cudaGetErrorString(cudaErrorStreamCaptureUnsupported))
              .find("cudaStreamSynchronize waits for stream") != std::string::npos);
  cudaStreamCaptureStatus status{};
  REQUIRE(cudaStreamIsCapturing(s, &status) == cudaSuccess);
  REQUIRE(status == cudaStreamCaptureStatusInvalidated);
  REQUIRE(cudaMemsetAsync(nullptr, 0, 0, s) == cudaSuccess);  // nothing to record
  cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(1);
  REQUIRE(cudaStreamEndCapture(s, &graph) == cudaErrorStreamCaptureInvalidated);
  REQUIRE(graph == nullptr);
  REQUIRE(nvemu::host_synchronizations() == waits);  // refused: no wait happened
  // cudaDeviceSynchronize, and cudaMalloc unless the thread's mode is relaxed.
  REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaErrorStreamCaptureUnsupported);
  REQUIRE(cudaStreamEndCapture(s, &graph) == cudaErrorStreamCaptureInvalidated);
  REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  void* p = nullptr;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  REQUIRE(cudaThreadExchangeStreamCaptureMode(&mode) == cudaSuccess);
  REQUIRE(cudaMalloc(&p, 256) == cudaSuccess);
  REQUIRE(cudaThreadExchangeStreamCaptureMode(&mode) == cudaSuccess);
  REQUIRE(mode == cudaStreamCaptureModeRelaxed);
  REQUIRE(cudaStreamEndCapture(s, &graph) == cudaSuccess);  // an empty graph
  REQUIRE(cudaGraphDestroy(graph) == cudaSuccess);
  REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  void* q = nullptr;
  REQUIRE(cudaMalloc(&q, 256) == cudaErrorStreamCaptureUnsupported);
  (void)cudaGetLastError();
  REQUIRE(cudaStreamEndCapture(s, &graph) == cudaErrorStreamCaptureInvalidated);
  // Capture of the legacy stream, ending a capture that never began.
  REQUIRE(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) ==
          cudaErrorStreamCaptureUnsupported);
  REQUIRE(cudaStreamEndCapture(s, &graph) == cudaErrorIllegalState);
  (void)cudaGetLastError();
  REQUIRE(cudaFree(p) == cudaSuccess);
  REQUIRE(cudaStreamDestroy(s) == cudaSuccess);
}
#endif
