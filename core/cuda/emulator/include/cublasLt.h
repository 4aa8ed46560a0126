#pragma once
// cuBLASLt under the emulator: the handle only (nextvit creates one; no Lt matmul is called).
#include <cublas_v2.h>

struct cublasLtContext;
typedef cublasLtContext* cublasLtHandle_t;

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle);
