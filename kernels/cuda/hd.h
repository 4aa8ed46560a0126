#pragma once
// Marks functions shared by a CUDA kernel and its host-side emulation in the tests
// (tests/test_cuda_emulation.cpp): __host__ __device__ under nvcc, plain inline under the host
// compiler. NV_UNROLL / NV_NO_UNROLL ask nvcc's device pass to unroll a loop (or not); the
// host pass ignores them, so the host compiler sees no unknown pragma.
#if defined(__CUDACC__)
#define NV_HD __host__ __device__ __forceinline__
#else
#define NV_HD inline
#endif

#if defined(__CUDA_ARCH__)
#define NV_UNROLL _Pragma("unroll")
#define NV_NO_UNROLL _Pragma("unroll 1")
#else
#define NV_UNROLL
#define NV_NO_UNROLL
#endif
