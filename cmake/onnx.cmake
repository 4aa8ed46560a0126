# ONNX export (models/onnx_export.h) through Debian's ONNX and protobuf libraries (libonnx-dev,
# libprotobuf-dev): the graph is built as onnx::ModelProto messages and checked by
# onnx::checker, never hand-encoded. Included by cmake/layers.cmake once nextvit_models exists.
#   AUTO (default): on when both libraries are found;  ON: required;  OFF: never.
# Without it, export_onnx() throws "built without ONNX" and the library builds the same.
set(NEXTVIT_ONNX "AUTO" CACHE STRING "ONNX export: ON, OFF or AUTO (on when libonnx is found)")
set_property(CACHE NEXTVIT_ONNX PROPERTY STRINGS AUTO ON OFF)

set(NEXTVIT_WITH_ONNX OFF)
if(NOT NEXTVIT_ONNX STREQUAL "OFF")
  set(onnx_required "")
  if(NEXTVIT_ONNX STREQUAL "ON")
    set(onnx_required REQUIRED)
  endif()
  # ONNX's package names protobuf::libprotobuf without finding it: CMake's FindProtobuf does.
  find_package(Protobuf ${onnx_required})
  if(Protobuf_FOUND)
    find_package(ONNX CONFIG ${onnx_required})
  endif()
  if(Protobuf_FOUND AND ONNX_FOUND AND TARGET onnx)
    set(NEXTVIT_WITH_ONNX ON)
  endif()
endif()
if(NEXTVIT_WITH_ONNX)
  target_compile_definitions(nextvit_models PRIVATE NEXTVIT_WITH_ONNX=1)
  target_link_libraries(nextvit_models PRIVATE onnx)
endif()
message(STATUS "nextvit: ONNX export ${NEXTVIT_WITH_ONNX} (NEXTVIT_ONNX=${NEXTVIT_ONNX})")
