#pragma once
// Element types. The dtype is a run-time property of a tensor, not a template parameter of the
// network, so half-precision types can be added without touching layers. Kernels today exist
// for F32; I64 is for labels and BatchNorm's num_batches_tracked; F16/BF16 are storage types
// (safetensors can hold them and they convert to F32 on load).
#include <cstddef>
#include <cstdint>
#include <string>

namespace nextvit {

enum class DType : uint8_t { F32, F16, BF16, I64 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::F16:
      return 2;
    case DType::BF16:
      return 2;
    case DType::I64:
      return 8;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::F16:
      return "f16";
    case DType::BF16:
      return "bf16";
    case DType::I64:
      return "i64";
  }
  return "?";
}

// The DType that corresponds to a C++ element type.
template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::F32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::I64;
};

}  // namespace nextvit
