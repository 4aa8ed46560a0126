// Several emulated devices (NVEMU_DEVICES, docs/cuda-emulator.md): each host thread's current
// device, peer access between devices, and the check that a kernel or library call touches only
// memory its device may reach. The devices are identical (runtime.cpp's properties) and share
// the host's cores; what differs is which device each allocation, stream, event and library
// handle belongs to, which is what multi-GPU bugs get wrong.
#include <set>
#include <string>
#include <utility>

#include "core/cuda/emulator/state.h"

namespace nvemu {
namespace {

thread_local int t_current_device = 0;  // cudaSetDevice is per host thread, as in CUDA

std::set<std::pair<int, int>>& peers() {  // (device, peer): device's kernels may read peer
  static auto* p = new std::set<std::pair<int, int>>();
  return *p;
}

bool valid_device(int d) {
  return d >= 0 && d < device_count();
}

}  // namespace

int device_count() {
  return options().devices;
}

int current_device() {
  return t_current_device;
}

bool peer_access(int device, int peer) {
  return device == peer || peers().count({device, peer}) > 0;
}

std::string foreign_memory(const std::vector<const Allocation*>& reached, int device) {
  for (const Allocation* a : reached) {
    if (peer_access(device, a->device)) continue;
    return "touches allocation #" + std::to_string(a->id) + " (" + std::to_string(a->bytes) +
           " bytes) of device " + std::to_string(a->device) + " while running on device " +
           std::to_string(device) + ", without peer access from device " + std::to_string(device) +
           " to device " + std::to_string(a->device) +
           " (cudaDeviceEnablePeerAccess); copy the data to device " + std::to_string(device) +
           " first";
  }
  return {};
}

}  // namespace nvemu

using nvemu::set_error;

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return set_error(cudaErrorInvalidValue);
  *count = nvemu::device_count();
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return set_error(cudaErrorInvalidValue);
  *device = nvemu::t_current_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (!nvemu::valid_device(device)) return set_error(cudaErrorInvalidDevice);
  nvemu::t_current_device = device;
  return cudaSuccess;
}

cudaError_t cudaDeviceCanAccessPeer(int* can, int device, int peer) {
  if (can == nullptr) return set_error(cudaErrorInvalidValue);
  if (!nvemu::valid_device(device) || !nvemu::valid_device(peer)) {
    return set_error(cudaErrorInvalidDevice);
  }
  *can = device != peer;  // as on an NVLink-connected node; a device is not its own peer
  return cudaSuccess;
}

// Lets kernels of the current device read and write `peer`'s memory (one direction, as CUDA).
cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned flags) {
  std::lock_guard<std::recursive_mutex> lock(nvemu::device_mutex());
  const int device = nvemu::t_current_device;
  if (flags != 0) return set_error(cudaErrorInvalidValue);
  if (!nvemu::valid_device(peer) || peer == device) return set_error(cudaErrorInvalidDevice);
  if (!nvemu::peers().insert({device, peer}).second) {
    return set_error(cudaErrorPeerAccessAlreadyEnabled);
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceDisablePeerAccess(int peer) {
  std::lock_guard<std::recursive_mutex> lock(nvemu::device_mutex());
  if (!nvemu::peers().erase({nvemu::t_current_device, peer})) {
    return set_error(cudaErrorPeerAccessNotEnabled);
  }
  return cudaSuccess;
}
