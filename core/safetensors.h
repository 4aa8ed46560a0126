#pragma once
// safetensors files (https://github.com/huggingface/safetensors): the format of weights, inputs
// and reference outputs exchanged with PyTorch.
//
// Layout of a file:
//   bytes [0, 8)       N, the header length, unsigned 64-bit little-endian
//   bytes [8, 8 + N)   a JSON object: name -> {"dtype": "F32", "shape": [2, 3],
//                      "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
//                      string -> string; may end in spaces (writers pad it to 8-byte alignment)
//   bytes [8 + N, ..)  the data section: each tensor's row-major little-endian bytes at
//                      [begin, end) relative to the section start, tensors packed without gaps
//
// Reading validates everything before trusting it and every failure is a nextvit::Error that
// names the file and, where there is one, the tensor. Writing is atomic: the bytes go to
// PATH.tmp, which is renamed over PATH only once complete, so a crash never leaves half a file.
#include <cstddef>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace nextvit {

// Tensors in file order (the order their bytes appear in the data section, which is also the
// header order for files written by this code or by the Python package), with lookup by name.
class SafeTensors {
 public:
  SafeTensors() = default;
  // `source` names the tensors in error messages (the file path when read from disk).
  explicit SafeTensors(std::string source) : source_(std::move(source)) {}

  // Appends a tensor; throws when the name is empty, reserved ("__metadata__") or already used.
  void add(const std::string& name, const Tensor& tensor);

  const std::vector<std::pair<std::string, Tensor>>& tensors() const { return tensors_; }
  size_t size() const { return tensors_.size(); }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // nullptr when there is no tensor of that name.
  const Tensor* find(const std::string& name) const;
  // Throws, naming the source and the name, when there is no tensor of that name.
  const Tensor& at(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& source() const { return source_; }

  // The optional "__metadata__" map (free-form strings, e.g. {"format": "pt"}).
  std::map<std::string, std::string> metadata;

 private:
  std::string source_ = "<memory>";
  std::vector<std::pair<std::string, Tensor>> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
};

// Reads a whole file into CPU tensors of the stored dtype (F32, F16, BF16 or I64; convert with
// Tensor::to(DType::F32)). Any other dtype is an error naming the tensor.
SafeTensors read_safetensors(const std::string& path);
// The same from bytes in memory; `source` names them in errors.
SafeTensors parse_safetensors(const std::string& bytes, const std::string& source = "<memory>");

// Writes the tensors in the given order; each may live on any device and have any strides (it
// is copied to contiguous host memory first). Names must be unique and not "__metadata__".
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
void write_safetensors(const std::string& path, const SafeTensors& file);

// The format's dtype strings ("F32", "F16", "BF16", "I64") and back; parse throws for others.
const char* safetensors_dtype_name(DType dtype);
DType parse_safetensors_dtype(const std::string& name);

}  // namespace nextvit
