#include "core/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_input.h"

// The format stores little-endian bytes and tensors are copied to and from memory as they are.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "core/safetensors.cpp assumes a little-endian host"
#endif

namespace nextvit {

// ---- SafeTensors -------------------------------------------------------------------------------

void SafeTensors::add(const std::string& name, const Tensor& tensor) {
  NV_CHECK(!name.empty(), "safetensors {}: a tensor name must not be empty", source_);
  NV_CHECK(name != "__metadata__", "safetensors {}: '__metadata__' is reserved, not a tensor name",
           source_);
  NV_CHECK(tensor.defined(), "safetensors {}: tensor '{}' is undefined", source_, name);
  const bool inserted = index_.emplace(name, tensors_.size()).second;
  NV_CHECK(inserted, "safetensors {}: two tensors are named '{}'", source_, name);
  tensors_.emplace_back(name, tensor);
}

const Tensor* SafeTensors::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second].second;
}

const Tensor& SafeTensors::at(const std::string& name) const {
  const Tensor* t = find(name);
  NV_CHECK(t != nullptr, "safetensors {}: no tensor named '{}' (the file has {} tensors)", source_,
           name, tensors_.size());
  return *t;
}

std::vector<std::string> SafeTensors::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& nt : tensors_) out.push_back(nt.first);
  return out;
}

// ---- dtypes ------------------------------------------------------------------------------------

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I64:
      return "I64";
  }
  return "?";
}

namespace {

bool dtype_from_name(const std::string& name, DType* out) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I64}) {
    if (name == safetensors_dtype_name(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

}  // namespace

DType parse_safetensors_dtype(const std::string& name) {
  DType t;
  NV_CHECK(dtype_from_name(name, &t),
           "safetensors: dtype '{}' is not supported (nextvit reads F32, F16, BF16 and I64)", name);
  return t;
}

// ---- reading -----------------------------------------------------------------------------------

namespace {

// A plain (sorted-map) object: the tensor order comes from the data offsets, not from the key
// order, and ordered_json inserts by linear search, which made a 100,000-tensor header take
// half a minute to parse.
using Json = nlohmann::json;

// One tensor's header entry after validation. Offsets are relative to the data section.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
  size_t header_index = 0;  // position of its key in the header
};

// SAX events of a header: the top-level keys in order, and the first one named twice.
struct HeaderKeys : nlohmann::json_sax<Json> {
  std::unordered_map<std::string, size_t> position;
  std::string duplicate, error;
  int depth = 0;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return ++depth, true; }
  bool end_object() override { return --depth, true; }
  bool start_array(std::size_t) override { return ++depth, true; }
  bool end_array() override { return --depth, true; }
  bool key(string_t& k) override {
    if (depth == 1 && !position.emplace(k, position.size()).second && duplicate.empty()) {
      duplicate = k;
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = e.what();
    return false;
  }
};

// A non-negative JSON integer, or an error naming the file, the tensor and the field.
uint64_t json_uint(const Json& v, const std::string& path, const std::string& name,
                   const char* field) {
  NV_CHECK(v.is_number_unsigned(),
           "safetensors {}: tensor '{}': {} must hold non-negative integers, found {}", path, name,
           field, v.dump());
  return v.get<uint64_t>();
}

// The entry's "shape" into e.shape; returns its size in bytes (e.dtype is set).
uint64_t parse_shape(const std::string& path, const Json& shape, Entry& e) {
  const std::string& name = e.name;
  NV_CHECK(shape.is_array(), "safetensors {}: tensor '{}': shape must be an array, found {}", path,
           name, shape.dump());
  // Count bytes with overflow checks: a hostile shape must not wrap around to a size that
  // matches its offsets. Zero dimensions are left out of the product, so that a shape such as
  // (0, 2^62, 2^62) is refused too (its strides would overflow).
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t bytes = dtype_size(e.dtype);
  bool zero = false;
  for (const Json& d : shape) {
    const uint64_t n = json_uint(d, path, name, "shape");
    e.shape.push_back(static_cast<int64_t>(std::min(n, limit)));
    NV_CHECK(n <= limit / bytes, "safetensors {}: tensor '{}': shape {} holds more than 2^63 bytes",
             path, name, shape.dump());
    if (n == 0) {
      zero = true;
    } else {
      bytes *= n;
    }
  }
  return zero ? 0 : bytes;
}

// The entry's "data_offsets" into e.begin and e.end: inside the data section, spanning `bytes`.
void parse_offsets(const std::string& path, const Json& offsets, uint64_t data_size, uint64_t bytes,
                   Entry& e) {
  const std::string& name = e.name;
  NV_CHECK(offsets.is_array() && offsets.size() == 2,
           "safetensors {}: tensor '{}': data_offsets must be [begin, end], found {}", path, name,
           offsets.dump());
  e.begin = json_uint(offsets[0], path, name, "data_offsets");
  e.end = json_uint(offsets[1], path, name, "data_offsets");
  NV_CHECK(e.begin <= e.end,
           "safetensors {}: tensor '{}': data_offsets [{}, {}] end before they begin", path, name,
           e.begin, e.end);
  NV_CHECK(e.end <= data_size,
           "safetensors {}: tensor '{}': data_offsets [{}, {}] run past the end of the {}-byte "
           "data section (the file is truncated or the header is wrong)",
           path, name, e.begin, e.end, data_size);
  NV_CHECK(e.end - e.begin == bytes,
           "safetensors {}: tensor '{}': data_offsets [{}, {}] span {} bytes but {} {} needs {}",
           path, name, e.begin, e.end, e.end - e.begin, safetensors_dtype_name(e.dtype),
           shape_str(e.shape), bytes);
}

// One header entry: an object with dtype, shape and data_offsets, each checked.
Entry parse_entry(const std::string& path, const std::string& name, const Json& v,
                  uint64_t data_size) {
  NV_CHECK(v.is_object(), "safetensors {}: tensor '{}': header entry must be an object, found {}",
           path, name, v.dump());
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    NV_CHECK(v.contains(field), "safetensors {}: tensor '{}': header entry has no \"{}\"", path,
             name, field);
  }
  Entry e;
  e.name = name;
  const Json& dtype = v.at("dtype");
  NV_CHECK(dtype.is_string(), "safetensors {}: tensor '{}': dtype must be a string, found {}", path,
           name, dtype.dump());
  NV_CHECK(dtype_from_name(dtype.get<std::string>(), &e.dtype),
           "safetensors {}: tensor '{}' has dtype {}, which nextvit does not read (it reads F32, "
           "F16, BF16 and I64)",
           path, name, dtype.get<std::string>());

  const uint64_t bytes = parse_shape(path, v.at("shape"), e);
  parse_offsets(path, v.at("data_offsets"), data_size, bytes, e);
  return e;
}

}  // namespace

namespace {

// 1. The header length, then the header text; both must lie inside the input.
std::string read_header_text(std::istream& in, uint64_t size, const std::string& path) {
  NV_CHECK(size >= 8,
           "safetensors {}: truncated: the file has {} bytes, fewer than the 8 of the header "
           "length",
           path, size);
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  NV_CHECK(in.good(), "safetensors {}: cannot read the header length", path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  // Checked against the real size before allocating, so 8 bytes cannot ask for 2^64.
  NV_CHECK(header_len <= size - 8,
           "safetensors {}: the header length {} runs past the end of the file ({} bytes): the "
           "file is truncated or is not a safetensors file",
           path, header_len, size);
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  NV_CHECK(in.good(), "safetensors {}: cannot read the {}-byte header", path, header_len);
  return text;
}

// 2. The JSON, then every entry on its own: dtype, shape, offsets inside the data section,
// size = shape. The metadata goes to `file`.
std::vector<Entry> parse_header(const std::string& text, uint64_t data_size,
                                const std::string& path, SafeTensors& file) {
  check_json_depth(text, "safetensors " + path + ": header");
  // JSON lets a key appear twice and the parser would keep one silently; a tensor named twice
  // is refused instead. A SAX pass sees every top-level key (and records its position, which
  // orders empty tensors that share an offset as the header lists them); nlohmann's
  // callback-filtered parse would do the same in quadratic time (160 s for 100,000 tensors).
  HeaderKeys keys;
  try {
    Json::sax_parse(text, &keys);
  } catch (const Json::exception& e) {
    NV_FAIL("safetensors {}: the {}-byte header is not valid JSON ({})", path, text.size(),
            e.what());
  }
  NV_CHECK(keys.error.empty(), "safetensors {}: the {}-byte header is not valid JSON ({})", path,
           text.size(), keys.error);
  Json header = Json::parse(text);
  NV_CHECK(header.is_object(), "safetensors {}: the header must be a JSON object, found {}", path,
           header.type_name());
  NV_CHECK(keys.duplicate.empty(), "safetensors {}: the header names '{}' twice", path,
           keys.duplicate);

  std::vector<Entry> entries;
  entries.reserve(header.size());
  for (const auto& item : header.items()) {
    if (item.key() == "__metadata__") {
      NV_CHECK(item.value().is_object(),
               "safetensors {}: __metadata__ must be an object of strings, found {}", path,
               item.value().dump());
      for (const auto& m : item.value().items()) {
        NV_CHECK(m.value().is_string(),
                 "safetensors {}: __metadata__ entry '{}' must be a string, found {}", path,
                 m.key(), m.value().dump());
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, item.key(), item.value(), data_size));
    entries.back().header_index = keys.position[item.key()];
  }
  return entries;
}

// 3. Together: sorted by position, the tensors must tile the data section exactly -- no
// overlap, no gap, nothing after the last one -- as the reference implementation demands.
// Equal offsets (empty tensors) keep their header order.
void sort_and_check_tiling(std::vector<Entry>& entries, uint64_t data_size,
                           const std::string& path) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    return a.end != b.end ? a.end < b.end : a.header_index < b.header_index;
  });
  uint64_t pos = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    NV_CHECK(e.begin >= pos,
             "safetensors {}: tensor '{}' at data_offsets [{}, {}] overlaps tensor '{}' at [{}, "
             "{}]",
             path, e.name, e.begin, e.end, entries[i - 1].name, entries[i - 1].begin,
             entries[i - 1].end);
    NV_CHECK(e.begin == pos,
             "safetensors {}: bytes [{}, {}) of the data section before tensor '{}' belong to no "
             "tensor",
             path, pos, e.begin, e.name);
    pos = e.end;
  }
  NV_CHECK(pos == data_size,
           "safetensors {}: the tensors cover {} bytes of the {}-byte data section; the rest "
           "belongs to no tensor",
           path, pos, data_size);
}

// 4. The bytes, read straight into each tensor's storage in file order. Every size was checked
// against the input's size in steps 1-3, so no allocation here exceeds it.
void read_tensor_data(std::istream& in, uint64_t data_start, const std::vector<Entry>& entries,
                      const std::string& path, SafeTensors& file) {
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    const uint64_t bytes = e.end - e.begin;
    if (bytes > 0) {
      in.seekg(static_cast<std::streamoff>(data_start + e.begin), std::ios::beg);
      in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(bytes));
      NV_CHECK(in.good(), "safetensors {}: tensor '{}': cannot read its {} bytes", path, e.name,
               bytes);
    }
    file.add(e.name, t);
  }
}

SafeTensors read_stream(std::istream& in, uint64_t size, const std::string& path) {
  const std::string text = read_header_text(in, size, path);
  const uint64_t data_size = size - 8 - text.size();
  SafeTensors file(path);
  std::vector<Entry> entries = parse_header(text, data_size, path, file);
  sort_and_check_tiling(entries, data_size, path);
  read_tensor_data(in, 8 + text.size(), entries, path, file);
  return file;
}

}  // namespace

SafeTensors read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  NV_CHECK(in.is_open(), "safetensors {}: cannot open the file for reading ({})", path,
           std::strerror(errno));
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0, std::ios::beg);
  return read_stream(in, file_size, path);
}

SafeTensors parse_safetensors(const std::string& bytes, const std::string& source) {
  std::istringstream in(bytes, std::ios::binary);
  return read_stream(in, bytes.size(), source);
}

// ---- writing -----------------------------------------------------------------------------------

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Check and stage everything before touching the disk: names, then a contiguous host copy of
  // each tensor (a no-op for a contiguous CPU tensor) whose bytes go out as they are.
  SafeTensors staged(path);
  // The header is assembled entry by entry in write order (one JSON object per tensor, joined),
  // which keeps that order in the file without an ordered map's quadratic inserts.
  std::string text = "{";
  auto append = [&](const std::string& key, const Json& value) {
    try {
      if (text.size() > 1) text += ',';
      text += Json(key).dump() + ':' + value.dump();
    } catch (const nlohmann::json::exception& e) {
      NV_FAIL("safetensors {}: cannot encode the header ({}): names and metadata must be UTF-8",
              path, e.what());
    }
  };
  if (!metadata.empty()) {
    Json m = Json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    append("__metadata__", m);
  }
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    NV_CHECK(tensor.defined(), "safetensors {}: tensor '{}' is undefined", path, name);
    Tensor host = tensor.cpu().contiguous();
    staged.add(name, host);  // checks the name
    Json entry = Json::object();
    entry["dtype"] = safetensors_dtype_name(host.dtype());
    entry["shape"] = host.shape();
    entry["data_offsets"] = {offset, offset + host.nbytes()};
    append(name, entry);
    offset += host.nbytes();
  }
  text += '}';
  // Spaces after the JSON (allowed by the format) put the data section on an 8-byte boundary.
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    NV_CHECK(out.is_open(), "safetensors {}: cannot open {} for writing ({})", path, tmp,
             std::strerror(errno));
    unsigned char len_bytes[8];
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i, n >>= 8) len_bytes[i] = static_cast<unsigned char>(n & 0xff);
    out.write(reinterpret_cast<const char*>(len_bytes), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& nt : staged.tensors()) {
      const Tensor& t = nt.second;
      if (t.numel() > 0) {
        out.write(static_cast<const char*>(t.raw_data()), static_cast<std::streamsize>(t.nbytes()));
      }
    }
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      NV_FAIL("safetensors {}: writing {} failed (disk full or no permission?)", path, tmp);
    }
  }
  // rename() replaces the destination atomically on POSIX: readers see the old file or the
  // complete new one.
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    NV_FAIL("safetensors {}: cannot rename {} to it ({})", path, tmp, std::strerror(err));
  }
}

void write_safetensors(const std::string& path, const SafeTensors& file) {
  write_safetensors(path, file.tensors(), file.metadata);
}

}  // namespace nextvit
