#pragma once
// One op, two devices. Every kernel is declared twice in its header kernels/<op>.h, with the
// same signature in namespace kernels::cpu (kernels/cpu/<op>.cpp, host pointers) and in
// namespace kernels::cuda (kernels/cuda/<op>.cu, device pointers, current stream).
// The CUDA branch first makes the tensors' device current (core/device_guard.h), so the
// kernel launches on that device's stream with its allocator and library handles.
// NV_DISPATCH(device, fn, args...) calls the one that matches the tensors' device and is an
// expression of the kernel's return type, so a kernel may return a value (a count, a norm).
//
// In a build without CUDA the cuda:: declarations are never referenced: the macro calls
// no_cuda(), which throws a clear error, so the library links with no CUDA stubs at all.
#include "core/device.h"
#include "core/device_guard.h"

namespace nextvit::kernels {

[[noreturn]] void no_cuda(const char* kernel);

// no_cuda as an expression of the kernel's return type T, for the other branch of the `?:`.
template <typename T>
[[noreturn]] T no_cuda_as(const char* kernel) {
  no_cuda(kernel);
}

}  // namespace nextvit::kernels

#ifdef NEXTVIT_WITH_CUDA
// The CUDA kernel runs with the tensors' device current (a DeviceGuard: a temporary, so it lives
// until the end of the full expression, i.e. the kernel call, and then restores the device).
#define NV_DISPATCH(device, fn, ...)                                                 \
  ((device).is_cuda()                                                                \
       ? (::nextvit::DeviceGuard(device), ::nextvit::kernels::cuda::fn(__VA_ARGS__)) \
       : ::nextvit::kernels::cpu::fn(__VA_ARGS__))
#else
#define NV_DISPATCH(device, fn, ...)                                                             \
  ((device).is_cuda()                                                                            \
       ? ::nextvit::kernels::no_cuda_as<decltype(::nextvit::kernels::cpu::fn(__VA_ARGS__))>(#fn) \
       : ::nextvit::kernels::cpu::fn(__VA_ARGS__))
#endif
