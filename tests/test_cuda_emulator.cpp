// The CUDA emulator's own checks, each shown to fire on a deliberately broken kernel (what
// compute-sanitizer would find on a GPU), and its runtime, cuBLAS and cuDNN emulations holding
// to the real libraries' argument rules. Only in the emulated build (-DNEXTVIT_CUDA=EMULATE);
// the kernels here are compiled by the host compiler against core/cuda/emulator/include.
#ifdef NEXTVIT_CUDA_EMULATED
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/cuda/emulator/include/nvemu.h"
#include "core/cuda/launch.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/conv2d_paths.h"
#include "test_util.h"

namespace {

// ---- broken kernels --------------------------------------------------------------------------

// Reads a neighbour's shared-memory slot without a barrier after the writes.
__global__ void missing_barrier_kernel(const float* in, float* out) {
  __shared__ float tile[64];
  tile[threadIdx.x] = in[threadIdx.x];
  out[threadIdx.x] = tile[(threadIdx.x + 1) % blockDim.x];
}

// The same with the barrier: correct under every schedule.
__global__ void with_barrier_kernel(const float* in, float* out) {
  __shared__ float tile[64];
  tile[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = tile[(threadIdx.x + 1) % blockDim.x];
}

// Writes one element past the end of its output.
__global__ void out_of_bounds_kernel(int n, float* out) {
  out[threadIdx.x + 1 == blockDim.x ? n : threadIdx.x] = 1.0f;
}

// Threads past n return before a barrier the others wait at.
__global__ void early_return_barrier_kernel(int n, float* out) {
  if (int(threadIdx.x) >= n) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

// Two halves of the block wait at two different barriers.
__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
    out[threadIdx.x] = 1.0f;
  } else {
    __syncthreads();
    out[threadIdx.x] = 2.0f;
  }
}

// Half a warp leaves before a full-warp shuffle.
__global__ void shuffle_deadlock_kernel(float* out) {
  if (threadIdx.x % 32 >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

// Shuffles, votes and dynamic shared memory as CUDA defines them.
__global__ void warp_ops_kernel(float* out) {
  NV_DYNAMIC_SHARED(float, scratch);
  const int lane = int(threadIdx.x % 32);
  float v = float(lane);
  out[0 * 32 + lane] = __shfl_xor_sync(0xffffffffu, v, 1);
  out[1 * 32 + lane] = __shfl_down_sync(0xffffffffu, v, 4);
  out[2 * 32 + lane] = __shfl_up_sync(0xffffffffu, v, 4);
  out[3 * 32 + lane] = __shfl_sync(0xffffffffu, v, 3, 8);
  out[4 * 32 + lane] = float(__ballot_sync(0xffffffffu, lane % 2 == 0) == 0x55555555u);
  scratch[lane] = v * 2.0f;
  __syncwarp();
  out[5 * 32 + lane] = scratch[31 - lane];
}

__global__ void noop_kernel(float*) {}

// ---- helpers ---------------------------------------------------------------------------------

struct DeviceBuffer {
  float* p = nullptr;
  explicit DeviceBuffer(size_t n) { REQUIRE(cudaMalloc(&p, n * sizeof(float)) == cudaSuccess); }
  ~DeviceBuffer() { cudaFree(p); }
};

// The sticky fault a broken launch left, then forgotten so the next check starts clean.
std::string take_fault() {
  const cudaError_t e = cudaGetLastError();
  std::string msg = nvemu::fault_message();
  if (e == cudaSuccess) msg.clear();
  nvemu::clear_fault_for_testing();
  nvemu::set_schedules("forward");
  return msg;
}

std::vector<float> iota_floats(int n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[size_t(i)] = float(i);
  return v;
}

// Runs this test binary on one hidden test and returns what it printed and its exit status
// (a fault that AddressSanitizer turns into an abort is observed from outside the process).
std::pair<int, std::string> run_child(const std::string& test_name, const std::string& env = "") {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string cmd = env + "'" + self + "' \"" + test_name + "\" 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), int(buf.size()), p)) out += buf.data();
  return {pclose(p), out};
}

}  // namespace

TEST_CASE("emulator: a missing barrier is caught as a race, naming the kernel", "[emulator]") {
  DeviceBuffer in(64), out(64);
  const std::vector<float> host = iota_floats(64);
  REQUIRE(cudaMemcpy(in.p, host.data(), 64 * 4, cudaMemcpyHostToDevice) == cudaSuccess);

  nvemu::set_schedules("forward,reverse");
  NV_LAUNCH(1, 64, 0, nullptr, with_barrier_kernel)(in.p, out.p);
  REQUIRE(take_fault().empty());

  nvemu::set_schedules("forward,reverse");
  NV_LAUNCH(1, 64, 0, nullptr, missing_barrier_kernel)(in.p, out.p);
  const std::string f = take_fault();
  INFO(f);
  REQUIRE_THAT(f, Catch::Contains("missing_barrier_kernel") && Catch::Contains("race"));
  // After the fault the device works again (clear_fault_for_testing) and the barrier version
  // gives the rotated input.
  NV_LAUNCH(1, 64, 0, nullptr, with_barrier_kernel)(in.p, out.p);
  std::vector<float> got(64);
  REQUIRE(cudaMemcpy(got.data(), out.p, 64 * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int i = 0; i < 64; ++i) REQUIRE(got[size_t(i)] == float((i + 1) % 64));
  // Both kernels are recorded for the coverage test, by launch-site file and name.
  const std::vector<std::string> launched = nvemu::kernels_launched();
  const std::set<std::string> seen(launched.begin(), launched.end());
  REQUIRE(seen.count("tests/test_cuda_emulator.cpp:with_barrier_kernel") == 1);
  REQUIRE(seen.count("tests/test_cuda_emulator.cpp:missing_barrier_kernel") == 1);
}

TEST_CASE("emulator: a barrier not reached by every thread is an error, never a hang",
          "[emulator]") {
  DeviceBuffer out(64);
  NV_LAUNCH(1, 64, 0, nullptr, early_return_barrier_kernel)(40, out.p);
  std::string f = take_fault();
  INFO(f);
  REQUIRE_THAT(f, Catch::Contains("early_return_barrier_kernel") &&
                      Catch::Contains("reached by 40 of 64 threads"));
  NV_LAUNCH(1, 64, 0, nullptr, divergent_barrier_kernel)(out.p);
  f = take_fault();
  INFO(f);
  REQUIRE_THAT(
      f, Catch::Contains("divergent_barrier_kernel") && Catch::Contains("divergent __syncthreads"));
  NV_LAUNCH(1, 64, 0, nullptr, shuffle_deadlock_kernel)(out.p);
  f = take_fault();
  INFO(f);
  REQUIRE_THAT(f, Catch::Contains("shuffle_deadlock_kernel") && Catch::Contains("deadlock"));
}

TEST_CASE("emulator: launch limits give the errors a real launch gives", "[emulator]") {
  DeviceBuffer out(1);
  NV_LAUNCH(1, 1025, 0, nullptr, noop_kernel)(out.p);
  REQUIRE(cudaGetLastError() == cudaErrorInvalidConfiguration);
  NV_LAUNCH(1, dim3(32, 32, 2), 0, nullptr, noop_kernel)(out.p);
  REQUIRE(cudaGetLastError() == cudaErrorInvalidConfiguration);
  NV_LAUNCH(dim3(1, 65536), 32, 0, nullptr, noop_kernel)(out.p);
  REQUIRE(cudaGetLastError() == cudaErrorInvalidConfiguration);
  NV_LAUNCH(0, 32, 0, nullptr, noop_kernel)(out.p);
  REQUIRE(cudaGetLastError() == cudaErrorInvalidConfiguration);
  // More than 48 KB of dynamic shared memory needs the opt-in, up to 227 KB.
  NV_LAUNCH(1, 32, 64 * 1024, nullptr, noop_kernel)(out.p);
  REQUIRE(cudaGetLastError() == cudaErrorInvalidValue);
  REQUIRE(cudaFuncSetAttribute(noop_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               300 * 1024) == cudaErrorInvalidValue);
  REQUIRE(cudaGetLastError() == cudaErrorInvalidValue);
  REQUIRE(cudaFuncSetAttribute(noop_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               64 * 1024) == cudaSuccess);
  NV_LAUNCH(1, 32, 64 * 1024, nullptr, noop_kernel)(out.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  // A configuration error is not sticky: the next launch works.
  NV_LAUNCH(1, 1024, 0, nullptr, noop_kernel)(out.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("emulator: a host pointer passed to a kernel is an illegal address", "[emulator]") {
  std::vector<float> host(4);
  NV_LAUNCH(1, 4, 0, nullptr, noop_kernel)(host.data());
  const std::string f = take_fault();
  INFO(f);
  REQUIRE_THAT(f, Catch::Contains("noop_kernel") && Catch::Contains("not device memory"));
}

TEST_CASE("emulator: after a kernel fault, allocation reports the fault, not out of memory",
          "[emulator]") {
  std::vector<float> host(4);
  NV_LAUNCH(1, 4, 0, nullptr, noop_kernel)(host.data());  // faults: a host pointer
  REQUIRE_THROWS_WITH(
      nextvit::Tensor::empty({777777}, nextvit::DType::F32, nextvit::Device::cuda()),
      Catch::Contains("error state from an earlier kernel") && !Catch::Contains("out of memory"));
  take_fault();
  // A real out-of-memory says so, with the numbers.
  REQUIRE_THROWS_WITH(
      nextvit::Tensor::empty({int64_t(1) << 40}, nextvit::DType::F32, nextvit::Device::cuda()),
      Catch::Contains("CUDA out of memory: requested 4398046511104 bytes") &&
          Catch::Contains("free of"));
}

// Run in a child process by the next test: with AddressSanitizer the write aborts the process.
TEST_CASE("emulator child: out-of-bounds write", "[.emulator-child]") {
  DeviceBuffer out(64);
  NV_LAUNCH(1, 64, 0, nullptr, out_of_bounds_kernel)(64, out.p);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE("emulator: an out-of-bounds write is caught, naming the kernel", "[emulator]") {
  const auto [status, out] = run_child("emulator child: out-of-bounds write");
  INFO(out);
  REQUIRE(status != 0);
  REQUIRE_THAT(out, Catch::Contains("out_of_bounds_kernel"));
  REQUIRE_THAT(out, Catch::Contains("heap-buffer-overflow") ||
                        Catch::Contains("byte 0 past the end of allocation"));
}

TEST_CASE("emulator: shuffles, votes and dynamic shared memory follow CUDA", "[emulator]") {
  DeviceBuffer out(6 * 32);
  nvemu::set_schedules("forward,reverse,shuffle");
  NV_LAUNCH(1, 32, 32 * sizeof(float), nullptr, warp_ops_kernel)(out.p);
  REQUIRE(take_fault().empty());
  std::vector<float> r(6 * 32);
  REQUIRE(cudaMemcpy(r.data(), out.p, r.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int l = 0; l < 32; ++l) {
    INFO("lane " << l);
    CHECK(r[size_t(l)] == float(l ^ 1));
    CHECK(r[size_t(32 + l)] == float(l + 4 < 32 ? l + 4 : l));
    CHECK(r[size_t(64 + l)] == float(l >= 4 ? l - 4 : l));
    CHECK(r[size_t(96 + l)] == float(l / 8 * 8 + 3));
    CHECK(r[size_t(128 + l)] == 1.0f);
    CHECK(r[size_t(160 + l)] == float(2 * (31 - l)));
  }
}

TEST_CASE("emulator: device memory copies check their direction and bounds", "[emulator]") {
  DeviceBuffer d(16);
  std::vector<float> h(16, 1.0f);
  REQUIRE(cudaMemcpy(d.p, h.data(), 16 * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(d.p, h.data(), 17 * 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  REQUIRE(cudaMemcpy(h.data(), d.p, 16 * 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  REQUIRE(cudaMemset(d.p + 8, 0, 9 * 4) == cudaErrorInvalidValue);
  REQUIRE(cudaFree(h.data()) == cudaErrorInvalidValue);
  (void)cudaGetLastError();
  // New device memory reads as NaN, not as a plausible zero.
  DeviceBuffer fresh(4);
  std::vector<float> got(4);
  REQUIRE(cudaMemcpy(got.data(), fresh.p, 16, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(std::isnan(got[0]));
  cudaDeviceProp prop;
  REQUIRE(cudaGetDeviceProperties(&prop, 0) == cudaSuccess);
  REQUIRE(prop.major == 9);
  REQUIRE_THAT(std::string(prop.name), Catch::Contains("emulated"));
}

TEST_CASE("emulator: cuBLAS checks arguments as cuBLAS does", "[emulator]") {
  cublasHandle_t h;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  DeviceBuffer a(6), b(6), c(4);
  const std::vector<float> av{1, 2, 3, 4, 5, 6}, bv{1, 0, 0, 1, 1, 1};
  cudaMemcpy(a.p, av.data(), 24, cudaMemcpyHostToDevice);
  cudaMemcpy(b.p, bv.data(), 24, cudaMemcpyHostToDevice);
  const float one = 1.0f, zero = 0.0f;
  // Column-major C (2x2) = A (2x3) B (3x2); C's NaN contents are not read with beta = 0.
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.p, 2, b.p, 3, &zero, c.p, 2) ==
          CUBLAS_STATUS_SUCCESS);
  std::vector<float> cv(4);
  cudaMemcpy(cv.data(), c.p, 16, cudaMemcpyDeviceToHost);
  REQUIRE(cv == std::vector<float>{1, 2, 9, 12});
  // lda smaller than the rows of A as stored: INVALID_VALUE, nothing computed.
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.p, 1, b.p, 3, &zero, c.p, 2) ==
          CUBLAS_STATUS_INVALID_VALUE);
  REQUIRE(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 2, 2, 3, &one, a.p, 2, b.p, 3, &zero, c.p, 2) ==
          CUBLAS_STATUS_INVALID_VALUE);
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, -1, 2, 3, &one, a.p, 2, b.p, 3, &zero, c.p, 2) ==
          CUBLAS_STATUS_INVALID_VALUE);
  // K = 0 scales C by beta.
  const float two = 2.0f;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 0, &one, a.p, 2, b.p, 1, &two, c.p, 2) ==
          CUBLAS_STATUS_SUCCESS);
  cudaMemcpy(cv.data(), c.p, 16, cudaMemcpyDeviceToHost);
  REQUIRE(cv == std::vector<float>{2, 4, 18, 24});
  // Operands reaching past their allocation fault like a real kernel's illegal address.
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 3, 3, &one, a.p, 2, b.p, 3, &zero, c.p, 2) ==
          CUBLAS_STATUS_EXECUTION_FAILED);
  REQUIRE_THAT(take_fault(), Catch::Contains("not inside one device allocation"));
  cublasDestroy(h);
}

TEST_CASE("emulator: cuDNN checks descriptors and workspace as cuDNN does", "[emulator]") {
  cudnnHandle_t h;
  REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  cudnnCreateTensorDescriptor(&x);
  cudnnCreateTensorDescriptor(&y);
  cudnnCreateFilterDescriptor(&w);
  cudnnCreateConvolutionDescriptor(&conv);
  REQUIRE(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 2, 5, 5) ==
          CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 0, 5, 5) ==
          CUDNN_STATUS_BAD_PARAM);
  REQUIRE(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 3, 2, 3, 3) ==
          CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetConvolution2dDescriptor(conv, 1, 1, 2, 2, 1, 1, CUDNN_CROSS_CORRELATION,
                                          CUDNN_DATA_FLOAT) == CUDNN_STATUS_SUCCESS);
  // A wrong output shape is refused (5x5, pad 1, stride 2: 3x3).
  REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 3, 5, 5) ==
          CUDNN_STATUS_SUCCESS);
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int n = 0;
  REQUIRE(cudnnGetConvolutionForwardAlgorithm_v7(h, x, w, conv, y, 8, &n, perf) ==
          CUDNN_STATUS_BAD_PARAM);
  REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 3, 3, 3) ==
          CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnGetConvolutionForwardAlgorithm_v7(h, x, w, conv, y, 8, &n, perf) ==
          CUDNN_STATUS_SUCCESS);
  REQUIRE(n > 0);
  DeviceBuffer xd(50), wd(54), yd(27);
  const float one = 1.0f, zero = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (perf[i].memory == 0) continue;
    // Less workspace than the algorithm needs: BAD_PARAM.
    REQUIRE(cudnnConvolutionForward(h, &one, x, xd.p, w, wd.p, conv, perf[i].algo, nullptr, 0,
                                    &zero, y, yd.p) == CUDNN_STATUS_BAD_PARAM);
  }
  cudnnDestroyConvolutionDescriptor(conv);
  cudnnDestroyFilterDescriptor(w);
  cudnnDestroyTensorDescriptor(y);
  cudnnDestroyTensorDescriptor(x);
  cudnnDestroy(h);
}

// Run in a child process with a 16 MiB emulated device by the next test: the 1x1 convolution's
// weight gradient then works through its images in chunks (the scratch is capped at an eighth of
// the device's memory, 2 MiB): by partial products (512 x 512 weights per 16x16 image: two
// images a chunk) and by gathering (384 channels of 7x7 images: 13 images a chunk).
TEST_CASE("emulator child: 1x1 convolution in image chunks", "[.emulator-child]") {
  for (const auto& [x_shape, c] :
       {std::pair<nextvit::Shape, int64_t>{{3, 512, 16, 16}, 512}, {{16, 384, 7, 7}, 384}}) {
    nextvit::kernels::Conv2dShape s;
    s.batch = x_shape[0];
    s.in_channels = s.out_channels = c;
    s.in_h = x_shape[2];
    s.in_w = x_shape[3];
    s.kernel_h = s.kernel_w = 1;
    s.stride_h = s.stride_w = 1;
    s.pad_h = s.pad_w = 0;
    s.groups = 1;
    nextvit::Generator g(7);
    const nextvit::Tensor x = nextvit::test::random_tensor(x_shape, g);
    const nextvit::Tensor dy = nextvit::test::random_tensor({s.batch, c, s.in_h, s.in_w}, g);
    nextvit::Tensor dw = nextvit::Tensor::empty({c, c, 1, 1});
    nextvit::kernels::cpu::conv2d_backward_weight(s, x.data<float>(), dy.data<float>(),
                                                  dw.data<float>(), nullptr, nullptr);
    const nextvit::Tensor xd = x.to(nextvit::Device::cuda()), dyd = dy.to(nextvit::Device::cuda());
    nextvit::Tensor dwd = nextvit::Tensor::full({c, c, 1, 1}, NAN, nextvit::Device::cuda());
    nextvit::kernels::cuda::conv_paths::pointwise_backward_weight(
        s, xd.data<float>(), dyd.data<float>(), dwd.data<float>());
    NV_REQUIRE_CLOSE(dwd.cpu(), dw, 1e-4, 1e-3);
  }
  std::printf("chunked 1x1 weight gradients match\n");
}

TEST_CASE("emulator: the 1x1 convolution's chunked weight gradient matches the CPU", "[emulator]") {
  const auto [status, out] =
      run_child("emulator child: 1x1 convolution in image chunks", "NVEMU_MEMORY_GIB=0.015625 ");
  INFO(out);
  REQUIRE(status == 0);
  REQUIRE_THAT(out, Catch::Contains("chunked 1x1 weight gradients match"));
}

// Every __global__ function in core/ and kernels/ has been launched by the suite. ctest runs it
// after every other test (tests/CMakeLists.txt: the kernel_coverage fixture); each test
// process appends to $NVEMU_COVERAGE_FILE the kernels it launched and its own name. Skipped
// (exit code 4) when ctest ran only part of the suite.
TEST_CASE("emulator coverage: every kernel in the tree was launched", "[.emulator-coverage]") {
  const char* file = std::getenv("NVEMU_COVERAGE_FILE");
  REQUIRE(file != nullptr);
  std::ifstream in(file);
  std::set<std::string> launched, tests_run;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("test: ", 0) == 0) {
      // ctest passes the name as a Catch test spec, with ',' '[' ']' escaped by a backslash.
      std::string name;
      for (size_t i = 6; i < line.size(); ++i) {
        if (line[i] == '\\' && i + 1 < line.size()) ++i;
        name += line[i];
      }
      tests_run.insert(name);
    } else if (!line.empty()) {
      launched.insert(line);
    }
  }
  // The whole suite: every test the binary lists.
  // (Catch 2 exits with the number of tests listed, not 0.)
  const std::string listing = run_child("--list-test-names-only").second;
  std::istringstream names(listing);
  int expected = 0, missing_tests = 0;
  for (std::string name; std::getline(names, name);) {
    if (name.empty() || name.find_first_not_of(' ') == std::string::npos) continue;
    ++expected;
    missing_tests += tests_run.count(name) ? 0 : 1;
  }
  if (missing_tests > 0) {
    std::printf("SKIPPED: %d of %d tests did not run in this ctest invocation\n", missing_tests,
                expected);
    std::exit(4);
  }
  // __launch_bounds__'s arguments may hold one level of parentheses (a constexpr call).
  const std::regex global(
      R"(__global__\s+void\s+(?:__launch_bounds__\((?:[^()]|\([^()]*\))*\)\s+)?(\w+)\s*\()");
  std::vector<std::string> never;
  int total = 0;
  for (const char* dir : {"core/cuda", "kernels/cuda"}) {
    for (const auto& entry :
         std::filesystem::directory_iterator(std::string(NEXTVIT_SOURCE_DIR) + "/" + dir)) {
      const std::string ext = entry.path().extension().string();
      if (ext != ".cu" && ext != ".cuh" && ext != ".h") continue;
      std::ifstream src(entry.path());
      const std::string text((std::istreambuf_iterator<char>(src)), {});
      for (std::sregex_iterator it(text.begin(), text.end(), global), end; it != end; ++it) {
        const std::string key =
            std::string(dir) + "/" + entry.path().filename().string() + ":" + (*it)[1].str();
        ++total;
        if (!launched.count(key)) never.push_back(key);
      }
    }
  }
  std::printf("%d __global__ kernels in the tree, %d launched by %d tests\n", total,
              total - int(never.size()), expected);
  INFO("never launched: " << [&] {
    std::string s;
    for (const std::string& k : never) s += k + " ";
    return s;
  }());
  REQUIRE(total > 40);
  REQUIRE(never.empty());
}

#endif  // NEXTVIT_CUDA_EMULATED
