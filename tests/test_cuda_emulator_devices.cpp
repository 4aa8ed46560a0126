// The emulator's multi-device checkers (docs/cuda-emulator.md), each shown to fire: a kernel
// touching another device's memory without peer access, a launch on another device's stream,
// an event recorded on another device's stream, and a cuBLAS or cuDNN handle used with another
// device's memory. Copies between devices work, as with unified addressing. Needs the emulated
// build with two devices (NVEMU_DEVICES=2, set for the emulated suite).
#ifdef NEXTVIT_CUDA_EMULATED
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>
#include <thread>
#include <vector>

#include "core/cuda/emulator/include/nvemu.h"
#include "core/cuda/launch.h"
#include "test_util.h"

namespace {

__global__ void fill_ones_kernel(float* out) {
  out[threadIdx.x] = 1.0f;
}

// Device memory of `device` (made with it current; the thread goes back to device 0).
struct Buffer {
  float* p = nullptr;
  Buffer(int device, size_t n) {
    REQUIRE(cudaSetDevice(device) == cudaSuccess);
    REQUIRE(cudaMalloc(&p, n * sizeof(float)) == cudaSuccess);
    REQUIRE(cudaSetDevice(0) == cudaSuccess);
  }
  ~Buffer() { cudaFree(p); }
};

// The sticky fault a broken call left, then forgotten so the next check starts clean.
std::string take_fault() {
  const cudaError_t e = cudaGetLastError();
  std::string msg = e == cudaSuccess ? "" : nvemu::fault_message();
  nvemu::clear_fault_for_testing();
  return msg;
}

bool skip_without_two_devices() {
  int n = 0;
  REQUIRE(cudaGetDeviceCount(&n) == cudaSuccess);
  if (n >= 2) return false;
  WARN("skipped: needs NVEMU_DEVICES=2 (set for the emulated suite by tests/CMakeLists.txt)");
  return true;
}

}  // namespace

TEST_CASE("emulator devices: per-thread device, properties and memory per device", "[emulator]") {
  if (skip_without_two_devices()) return;
  int n = 0, d = -1;
  cudaGetDeviceCount(&n);
  REQUIRE(cudaSetDevice(n) == cudaErrorInvalidDevice);
  (void)cudaGetLastError();
  REQUIRE(cudaSetDevice(1) == cudaSuccess);
  std::thread([&] { cudaGetDevice(&d); }).join();
  REQUIRE(d == 0);  // another thread starts on device 0
  cudaGetDevice(&d);
  REQUIRE(d == 1);
  size_t free1 = 0, total = 0, free0 = 0;
  REQUIRE(cudaMemGetInfo(&free1, &total) == cudaSuccess);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  {
    Buffer on1(1, 1 << 20);
    REQUIRE(cudaMemGetInfo(&free0, &total) == cudaSuccess);
    REQUIRE(free0 >= free1);  // device 1's allocation is not device 0's memory
  }
  int sms = 0;
  REQUIRE(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 1) == cudaSuccess);
  REQUIRE(sms > 0);
  REQUIRE(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, n) ==
          cudaErrorInvalidDevice);
  (void)cudaGetLastError();
}

TEST_CASE("emulator devices: a kernel touching another device's memory faults", "[emulator]") {
  if (skip_without_two_devices()) return;
  Buffer on1(1, 32);
  NV_LAUNCH(1, 32, 0, nullptr, fill_ones_kernel)(on1.p);  // device 0 is current
  const std::string fault = take_fault();
  REQUIRE_THAT(fault, Catch::Contains("fill_ones_kernel") && Catch::Contains("of device 1") &&
                          Catch::Contains("running on device 0"));
  // With peer access from device 0 to device 1 the same launch is legal.
  REQUIRE(cudaDeviceEnablePeerAccess(1, 0) == cudaSuccess);
  NV_LAUNCH(1, 32, 0, nullptr, fill_ones_kernel)(on1.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaDeviceDisablePeerAccess(1) == cudaSuccess);
  // A device-to-device copy between devices works (unified addressing), both ways.
  Buffer on0(0, 32);
  REQUIRE(cudaMemcpy(on0.p, on1.p, 32 * 4, cudaMemcpyDeviceToDevice) == cudaSuccess);
  std::vector<float> host(32);
  REQUIRE(cudaMemcpy(host.data(), on0.p, 32 * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(host == std::vector<float>(32, 1.0f));
}

TEST_CASE("emulator devices: streams and events belong to their device", "[emulator]") {
  if (skip_without_two_devices()) return;
  Buffer on0(0, 32);
  cudaStream_t s1;
  cudaEvent_t e0;
  REQUIRE(cudaEventCreate(&e0) == cudaSuccess);  // device 0's
  REQUIRE(cudaSetDevice(1) == cudaSuccess);
  REQUIRE(cudaStreamCreate(&s1) == cudaSuccess);  // device 1's
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  // A launch on another device's stream fails, as in CUDA, and does nothing.
  NV_LAUNCH(1, 32, 0, s1, fill_ones_kernel)(on0.p);
  REQUIRE(cudaGetLastError() == cudaErrorInvalidResourceHandle);
  REQUIRE(cudaEventRecord(e0, s1) == cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
  // Waiting on another device's event is allowed (how devices order their work).
  REQUIRE(cudaEventRecord(e0, nullptr) == cudaSuccess);
  REQUIRE(cudaStreamWaitEvent(s1, e0, 0) == cudaSuccess);
  cudaStreamDestroy(s1);
  cudaEventDestroy(e0);
}

TEST_CASE("emulator devices: library handles work on their own device's memory", "[emulator]") {
  if (skip_without_two_devices()) return;
  cublasHandle_t blas;
  cudnnHandle_t dnn;
  REQUIRE(cublasCreate(&blas) == CUBLAS_STATUS_SUCCESS);  // device 0's
  REQUIRE(cudnnCreate(&dnn) == CUDNN_STATUS_SUCCESS);
  Buffer a(0, 4), b(0, 4), c(1, 4);
  const float one = 1.0f, zero = 0.0f;
  REQUIRE(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, a.p, 2, b.p, 2, &zero, c.p,
                      2) == CUBLAS_STATUS_EXECUTION_FAILED);
  REQUIRE_THAT(take_fault(), Catch::Contains("operand C") && Catch::Contains("device 1") &&
                                 Catch::Contains("handle of device 0"));
  // A 1x1 convolution of a 1x1x2x2 image (x on device 1), through a device-0 handle.
  cudnnTensorDescriptor_t xd, yd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  cudnnCreateTensorDescriptor(&xd);
  cudnnCreateTensorDescriptor(&yd);
  cudnnCreateFilterDescriptor(&wd);
  cudnnCreateConvolutionDescriptor(&cd);
  cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 2, 2);
  cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 2, 2);
  cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 1, 1, 1, 1);
  cudnnSetConvolution2dDescriptor(cd, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
  REQUIRE(cudnnConvolutionForward(dnn, &one, xd, c.p, wd, a.p, cd,
                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, yd,
                                  b.p) == CUDNN_STATUS_EXECUTION_FAILED);
  REQUIRE_THAT(take_fault(), Catch::Contains("cudnnConvolutionForward") &&
                                 Catch::Contains("device 1") &&
                                 Catch::Contains("handle of device 0"));
  cudnnDestroyTensorDescriptor(xd);
  cudnnDestroyTensorDescriptor(yd);
  cudnnDestroyFilterDescriptor(wd);
  cudnnDestroyConvolutionDescriptor(cd);
  cudnnDestroy(dnn);
  cublasDestroy(blas);
}

#endif  // NEXTVIT_CUDA_EMULATED
