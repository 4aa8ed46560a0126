#pragma once
// Where a tensor's bytes live. Every op dispatches on the device of its inputs.
#include <string>

namespace nextvit {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

// Parses "cpu", "cuda" or "cuda:N"; throws nextvit::Error for anything else.
Device parse_device(const std::string& name);

// True when this build has the CUDA backend and a CUDA device is present at run time.
bool cuda_available();

}  // namespace nextvit
