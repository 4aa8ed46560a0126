# Data-parallel training (train/distributed/): MPI launches the ranks and, on the CPU, sums the
# gradients; NCCL sums them between GPUs when the CUDA backend is built. NEXTVIT_MPI=AUTO uses
# MPI when find_package finds it (Debian: libopenmpi-dev, openmpi-bin); without it the program
# is single-process and `--distributed` says it was built without MPI.
set(NEXTVIT_WITH_MPI OFF)
# The C API only (no deprecated C++ bindings), through the CXX component: nextvit enables no C.
set(MPI_CXX_SKIP_MPICXX ON)
if(NOT NEXTVIT_MPI STREQUAL "OFF")
  if(NEXTVIT_MPI STREQUAL "ON")
    find_package(MPI REQUIRED COMPONENTS CXX)
  else()
    find_package(MPI QUIET COMPONENTS CXX)
  endif()
  if(MPI_CXX_FOUND)
    set(NEXTVIT_WITH_MPI ON)
    target_link_libraries(nextvit_train PUBLIC MPI::MPI_CXX)
    target_compile_definitions(nextvit_train PUBLIC NEXTVIT_WITH_MPI=1)
    # For the tests: the launcher of 2-rank runs (CI runs as root in a container).
    set(NEXTVIT_MPIEXEC ${MPIEXEC_EXECUTABLE})
  endif()
endif()
message(STATUS "nextvit: MPI ${NEXTVIT_WITH_MPI}")

# NCCL (train/distributed/nccl_communicator.cpp) for ranks training on CUDA devices: the CUDA
# toolkit's libnccl, or, under the emulated device, the emulator's NCCL over MPI
# (core/cuda/emulator/nccl.cpp), so that the same code path is tested without GPUs.
set(NEXTVIT_WITH_NCCL OFF)
if(NEXTVIT_WITH_MPI AND NEXTVIT_WITH_CUDA)
  if(NEXTVIT_CUDA_EMULATED)
    target_compile_definitions(nextvit_core PRIVATE NVEMU_WITH_MPI=1)
    target_link_libraries(nextvit_core PUBLIC MPI::MPI_CXX)
    set(NEXTVIT_WITH_NCCL ON)
  else()
    find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
    if(NCCL_LIBRARY AND NCCL_INCLUDE_DIR)
      target_include_directories(nextvit_train PRIVATE ${NCCL_INCLUDE_DIR})
      target_link_libraries(nextvit_train PUBLIC ${NCCL_LIBRARY})
      set(NEXTVIT_WITH_NCCL ON)
    endif()
  endif()
  if(NEXTVIT_WITH_NCCL)
    target_compile_definitions(nextvit_train PRIVATE NEXTVIT_WITH_NCCL=1)
  endif()
endif()
message(STATUS "nextvit: NCCL ${NEXTVIT_WITH_NCCL}")
