#pragma once
// NCCL as the emulator implements it (core/cuda/emulator/nccl.cpp): the calls nextvit makes
// (train/distributed/nccl_communicator.cpp), with NCCL's types, values and argument checks.
// Each emulated GPU is one MPI process, so the collectives run over MPI on the emulated device
// memory (host memory); the emulated stream runs each call to completion when it is issued.
// Without MPI in the build every call returns ncclSystemError.
#include <cuda_runtime.h>

#include <cstddef>

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct {
  char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
  ncclNumResults = 8
} ncclResult_t;

typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;

typedef enum {
  ncclInt32 = 2,
  ncclInt = 2,
  ncclFloat32 = 7,
  ncclFloat = 7,
  ncclFloat64 = 8,
  ncclDouble = 8,
} ncclDataType_t;

struct ncclComm;
typedef ncclComm* ncclComm_t;

// An id naming a new communicator; rank 0 makes it and the caller sends it to the others.
ncclResult_t ncclGetUniqueId(ncclUniqueId* unique_id);
// Collective over the `nranks` processes that call it with the same id.
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId comm_id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
// Frees the communicator without waiting for the other ranks (error paths).
ncclResult_t ncclCommAbort(ncclComm_t comm);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error);
ncclResult_t ncclCommCount(const ncclComm_t comm, int* count);
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank);
const char* ncclGetErrorString(ncclResult_t result);
// recvbuff = the element-wise reduction of every rank's sendbuff (in place when they are
// equal). Both must lie inside one device allocation each. Float32, Float64 and Int32; sum,
// product, max, min and average.
ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream);
