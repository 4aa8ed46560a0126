# The library, one static library per layer (docs/conventions.md, "Layers"):
#
#   nextvit_core <- nextvit_kernels <- nextvit_autograd <- nextvit_layers <- nextvit_models
#                <- nextvit_train,   and nextvit_lib (nextvit::nextvit) = all of them.
#
# Each layer links only the layers below it, and its sources see only the folders of those
# layers: layer L compiles against build/include-view/L/, a directory of symbolic links to its
# own folder and the folders below it (never the repository root). An #include that climbs a
# layer ("layers/module.h" from kernels/) does not compile. Sources are globbed per folder, so a
# new file needs no edit here.

set(NEXTVIT_LAYERS core kernels autograd layers models train)

# build/include-view/<layer>/: links to <layer> and the layers below it.
function(nextvit_include_view layer out_var)
  set(view ${PROJECT_BINARY_DIR}/include-view/${layer})
  file(MAKE_DIRECTORY ${view})
  foreach(below ${NEXTVIT_LAYERS})
    if(NOT EXISTS ${view}/${below})
      file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${below} ${view}/${below} SYMBOLIC)
    endif()
    if(below STREQUAL layer)
      break()
    endif()
  endforeach()
  set(${out_var} ${view} PARENT_SCOPE)
endfunction()

# Compiles .cu sources with the host compiler against the CUDA emulator (NEXTVIT_CUDA=EMULATE).
function(nextvit_emulate_cuda_sources)
  foreach(src ${ARGN})
    if(src MATCHES "\\.cu$")
      # The host compiler treats .cu as C++ and, like nvcc, sees cuda_runtime.h first.
      # -Wsign-compare: CUDA's built-in indices are unsigned, and device code compares them
      # with ints throughout; nvcc never shows host-compiler warnings for device code.
      set_source_files_properties(${src} PROPERTIES LANGUAGE CXX
        COMPILE_OPTIONS "-xc++;-include;cuda_runtime.h;-Wno-sign-compare")
    endif()
  endforeach()
endfunction()

# add_nextvit_layer(NAME SOURCES... DEPENDS lower-targets...)
function(add_nextvit_layer layer)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS" ${ARGN})
  set(target nextvit_${layer})
  add_library(${target} STATIC ${ARG_SOURCES})
  add_library(nextvit::${layer} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${layer} OUTPUT_NAME nextvit_${layer})
  nextvit_include_view(${layer} view)
  target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${view}>
                                              $<INSTALL_INTERFACE:include/nextvit>)
  target_compile_features(${target} PUBLIC cxx_std_17)
  target_link_libraries(${target} PUBLIC ${ARG_DEPENDS})
  nextvit_target_options(${target})
  if(NEXTVIT_CUDA_EMULATED)
    nextvit_emulate_cuda_sources(${ARG_SOURCES})
  elseif(NEXTVIT_WITH_CUDA)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr --extended-lambda -Xcompiler=-Wall,-Wextra -lineinfo>)
    set_target_properties(${target} PROPERTIES CUDA_SEPARABLE_COMPILATION OFF
                                               CUDA_RESOLVE_DEVICE_SYMBOLS ON)
  endif()
endfunction()

# Sources of a folder: *.cpp everywhere, plus the CUDA backend's (*.cu and *.cpp under
# <folder>/cuda/) in builds with CUDA, or <folder>/no_cuda.cpp without.
function(nextvit_layer_sources folder out_var)
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${folder}/*.cpp)
  list(FILTER sources EXCLUDE REGEX "/${folder}/cuda/")
  list(FILTER sources EXCLUDE REGEX "/no_cuda\\.cpp$")
  if(NEXTVIT_WITH_CUDA AND EXISTS ${PROJECT_SOURCE_DIR}/${folder}/cuda)
    file(GLOB cuda_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${folder}/cuda/*.cu
                                             ${PROJECT_SOURCE_DIR}/${folder}/cuda/*.cpp)
    list(APPEND sources ${cuda_sources})
    if(NEXTVIT_CUDA_EMULATED AND EXISTS ${PROJECT_SOURCE_DIR}/${folder}/cuda/emulator)
      file(GLOB emulator_sources CONFIGURE_DEPENDS
           ${PROJECT_SOURCE_DIR}/${folder}/cuda/emulator/*.cpp)
      list(APPEND sources ${emulator_sources})
    endif()
  elseif(EXISTS ${PROJECT_SOURCE_DIR}/${folder}/no_cuda.cpp)
    list(APPEND sources ${PROJECT_SOURCE_DIR}/${folder}/no_cuda.cpp)
  endif()
  set(${out_var} ${sources} PARENT_SCOPE)
endfunction()

# ---- core: tensors, storage, allocators, RNG, safetensors, the CUDA runtime (or emulator) ----
nextvit_layer_sources(core NEXTVIT_CORE_SOURCES)
add_nextvit_layer(core SOURCES ${NEXTVIT_CORE_SOURCES}
                  DEPENDS OpenMP::OpenMP_CXX ${NEXTVIT_FMT_TARGET} nlohmann_json::nlohmann_json)
if(NEXTVIT_CUDA_EMULATED)
  target_compile_definitions(nextvit_core PUBLIC NEXTVIT_WITH_CUDA=1 NEXTVIT_CUDA_EMULATED=1
                                                 NEXTVIT_WITH_CUDNN=1)
  target_include_directories(nextvit_core BEFORE PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/core/cuda/emulator/include>
    $<INSTALL_INTERFACE:include/nextvit/core/cuda/emulator/include>)
elseif(NEXTVIT_WITH_CUDA)
  target_compile_definitions(nextvit_core PUBLIC NEXTVIT_WITH_CUDA=1)
  # Static CUDA runtime so the binaries run on a GPU machine that has the driver, cuBLAS and
  # cuDNN but none of Debian's packages.
  target_link_libraries(nextvit_core PUBLIC CUDA::cudart_static)
endif()

# ---- kernels: CPU and CUDA compute on raw pointers ------------------------------------------
nextvit_layer_sources(kernels NEXTVIT_KERNELS_SOURCES)
add_nextvit_layer(kernels SOURCES ${NEXTVIT_KERNELS_SOURCES} DEPENDS nextvit_core)
if(NEXTVIT_WITH_CUDA AND NOT NEXTVIT_CUDA_EMULATED)
  # The math libraries, whose handles live in kernels/cuda/library_handles.cu.
  target_link_libraries(nextvit_kernels PUBLIC CUDA::cublas CUDA::cublasLt)
endif()
if(NEXTVIT_WITH_CUDA AND NOT NEXTVIT_CUDA_EMULATED)
  find_library(CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR})
  if(CUDNN_LIBRARY)
    # cuDNN as an imported target, found the same way by nextvitConfig.cmake for consumers.
    if(NOT TARGET CUDNN::cudnn)
      add_library(CUDNN::cudnn UNKNOWN IMPORTED)
      set_target_properties(CUDNN::cudnn PROPERTIES IMPORTED_LOCATION ${CUDNN_LIBRARY})
    endif()
    set(NEXTVIT_WITH_CUDNN ON)
    target_compile_definitions(nextvit_kernels PUBLIC NEXTVIT_WITH_CUDNN=1)
    target_link_libraries(nextvit_kernels PUBLIC CUDNN::cudnn)
  endif()
endif()

# ---- the rest ---------------------------------------------------------------------------
foreach(pair autograd:kernels layers:autograd models:layers train:models)
  string(REPLACE ":" ";" pair ${pair})
  list(GET pair 0 layer)
  list(GET pair 1 below)
  nextvit_layer_sources(${layer} sources)
  list(FILTER sources EXCLUDE REGEX "/train/cli/")
  add_nextvit_layer(${layer} SOURCES ${sources} DEPENDS nextvit_${below})
endforeach()
target_include_directories(nextvit_train PRIVATE ${STB_INCLUDE_DIR})
include(${PROJECT_SOURCE_DIR}/train/distributed/mpi.cmake)
include(${PROJECT_SOURCE_DIR}/train/data/system_decoders.cmake)
include(${PROJECT_SOURCE_DIR}/cmake/onnx.cmake)

# Everything: what programs and other projects link (nextvit::nextvit).
add_library(nextvit_lib INTERFACE)
add_library(nextvit::nextvit ALIAS nextvit_lib)
set_target_properties(nextvit_lib PROPERTIES EXPORT_NAME nextvit)
target_link_libraries(nextvit_lib INTERFACE nextvit_train)
