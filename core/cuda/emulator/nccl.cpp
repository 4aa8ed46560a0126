// NCCL under the emulator: each emulated GPU is one MPI process, and a communicator is an MPI
// communicator over the processes that called ncclCommInitRank with one id. Emulated device
// memory is host memory, so ncclAllReduce hands its buffers to MPI_Allreduce directly, after
// NCCL's checks (valid communicator and stream, buffers inside device allocations, supported
// type and operation). The emulated stream runs every call to completion when it is issued, so
// the reduction is done when ncclAllReduce returns, as if the stream had been synchronised.
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/cuda/emulator/state.h"

#if NVEMU_WITH_MPI
#include <mpi.h>
#endif

struct ncclComm {
#if NVEMU_WITH_MPI
  MPI_Comm mpi = MPI_COMM_NULL;
#endif
  int rank = 0, size = 0;
  ncclResult_t async_error = ncclSuccess;
};

namespace {

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt32:
      return 4;
    case ncclFloat32:
      return 4;
    case ncclFloat64:
      return 8;
  }
  return 0;
}

}  // namespace

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error";
    case ncclSystemError:
      return "unhandled system error (emulated NCCL: is MPI initialised?)";
    case ncclInternalError:
      return "internal error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "NCCL operation in progress";
    default:
      return "unknown result code";
  }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (id == nullptr) return ncclInvalidArgument;
  std::memset(id->internal, 0, sizeof(id->internal));
  // Unique enough to tell communicators apart: this process, the time, a counter.
  static unsigned counter = 0;
  const long long now = std::chrono::steady_clock::now().time_since_epoch().count();
  std::snprintf(id->internal, sizeof(id->internal), "nvemu-nccl:%lld:%u", now, ++counter);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  if (comm == nullptr || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
#if NVEMU_WITH_MPI
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return ncclSystemError;
  // The processes holding one id form one communicator, ordered by their NCCL rank. Like the
  // real call, it is collective: here over every MPI process of the job.
  unsigned hash = 2166136261u;
  for (char c : id.internal) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619u;
  auto* c = new ncclComm;
  if (MPI_Comm_split(MPI_COMM_WORLD, int(hash & 0x3fffffff), rank, &c->mpi) != MPI_SUCCESS) {
    delete c;
    return ncclSystemError;
  }
  MPI_Comm_rank(c->mpi, &c->rank);
  MPI_Comm_size(c->mpi, &c->size);
  if (c->size != nranks || c->rank != rank) {  // ids or ranks that do not add up
    MPI_Comm_free(&c->mpi);
    delete c;
    return ncclInvalidUsage;
  }
  *comm = c;
  return ncclSuccess;
#else
  (void)id;
  return ncclSystemError;
#endif
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
#if NVEMU_WITH_MPI
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm->mpi);
#endif
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  // No collective teardown: the other ranks may be gone.
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error) {
  if (comm == nullptr || async_error == nullptr) return ncclInvalidArgument;
  *async_error = comm->async_error;
  return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  if (comm == nullptr || count == nullptr) return ncclInvalidArgument;
  *count = comm->size;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (comm == nullptr || rank == nullptr) return ncclInvalidArgument;
  *rank = comm->rank;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(nvemu::device_mutex());
  const size_t elem = type_size(datatype);
  if (comm == nullptr || elem == 0 || op < ncclSum || op > ncclAvg) return ncclInvalidArgument;
  if (!nvemu::valid_stream(stream)) return ncclInvalidArgument;
  if (nvemu::sticky_error() != cudaSuccess) return ncclUnhandledCudaError;
  if (count == 0) return ncclSuccess;
  // NCCL reads and writes device memory only: a host pointer faults on a real GPU.
  if (nvemu::find_allocation(sendbuff, count * elem) == nullptr ||
      nvemu::find_allocation(recvbuff, count * elem) == nullptr) {
    nvemu::fault(cudaErrorIllegalAddress, "ncclAllReduce: a buffer of " + std::to_string(count) +
                                              " elements is not inside one device allocation");
    return ncclUnhandledCudaError;
  }
#if NVEMU_WITH_MPI
  const MPI_Datatype type = datatype == ncclInt32     ? MPI_INT
                            : datatype == ncclFloat32 ? MPI_FLOAT
                                                      : MPI_DOUBLE;
  const MPI_Op mpi_op = op == ncclProd  ? MPI_PROD
                        : op == ncclMax ? MPI_MAX
                        : op == ncclMin ? MPI_MIN
                                        : MPI_SUM;
  if (count > size_t(INT32_MAX)) return ncclInvalidArgument;
  if (sendbuff != recvbuff) std::memcpy(recvbuff, sendbuff, count * elem);
  if (MPI_Allreduce(MPI_IN_PLACE, recvbuff, int(count), type, mpi_op, comm->mpi) != MPI_SUCCESS) {
    comm->async_error = ncclRemoteError;
    return ncclRemoteError;
  }
  if (op == ncclAvg) {
    for (size_t i = 0; i < count; ++i) {
      if (datatype == ncclFloat32) static_cast<float*>(recvbuff)[i] /= float(comm->size);
      if (datatype == ncclFloat64) static_cast<double*>(recvbuff)[i] /= double(comm->size);
      if (datatype == ncclInt32) static_cast<int*>(recvbuff)[i] /= comm->size;
    }
  }
  return ncclSuccess;
#else
  return ncclSystemError;
#endif
}
