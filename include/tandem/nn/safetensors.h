// safetensors.h — reading and writing the safetensors format (Hugging Face, PyTorch).
//
// Format: an 8-byte little-endian header length N, N bytes of JSON, then the data. The JSON maps
// each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets
// relative to the first data byte) and may hold "__metadata__": {string: string}.
//
// Loader safety (hostile input): parse() validates everything before anything is sized from the
// file: the header length against the file size and kMaxHeaderBytes (100 MB), the JSON's syntax
// and types, each dtype (a known safetensors dtype), shapes (non-negative, product without
// overflow, at most Shape::kMaxRank dims), offsets (begin <= end <= data size, end - begin ==
// numel * dtype size), and that the tensors tile the data section exactly, as the reference
// implementation requires: sorted by offset, no overlap, no gap, the last one ending at the end
// of the file; names unique and non-empty. Every rejection is
// Error(kFormat) whose message names the file and the tensor or field. No allocation depends on
// an unchecked header value: the only buffers are the file's own bytes (sized by the file
// system) and the parsed header.
//
// Threading: a SafetensorsFile is immutable after parse; any thread may read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/nn/tensor.h"

namespace tandem::nn {

// One tensor entry of a safetensors header.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // as in the file: "F32", "F16", "BF16", "I64", ...
  Shape shape;
  std::size_t begin = 0;  // byte offsets into the data section: [begin, end)
  std::size_t end = 0;
  // as_dtype(): the tandem DType of this entry (F32, F16, BF16), or nullopt for other dtypes.
  [[nodiscard]] std::optional<DType> as_dtype() const;
};

class SafetensorsFile {
 public:
  static constexpr std::size_t kMaxHeaderBytes = 100u * 1000u * 1000u;  // 100 MB

  // read(path): reads and parses a file. Error(kIo) when it cannot be read (names the path and
  // errno's text), Error(kFormat) when it is malformed.
  [[nodiscard]] static SafetensorsFile read(const std::string& path);
  // parse(bytes, origin): parses a whole file held in memory (copied). `origin` names the input
  // in error messages. The fuzz target's entry point.
  [[nodiscard]] static SafetensorsFile parse(std::span<const std::byte> bytes,
                                             std::string origin = "<memory>");

  // Entries in data-offset order.
  [[nodiscard]] const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  // find(name): the entry, or nullptr.
  [[nodiscard]] const SafetensorsEntry* find(std::string_view name) const;
  // bytes(entry): its data. Precondition: entry belongs to this file.
  [[nodiscard]] std::span<const std::byte> bytes(const SafetensorsEntry& entry) const;
  // floats(name): a float32 tensor's values (copied out, little-endian host assumed).
  // Error(kFormat) when missing or not F32, naming the tensor and the file.
  [[nodiscard]] std::vector<float> floats(std::string_view name) const;
  // to_tensor(name, device): the float32 tensor `name` on `device` (Tensor::from_host).
  // Error(kFormat) when missing; Error(kInvalidArgument) for F16/BF16 (not supported yet) and
  // Error(kFormat) for other dtypes.
  [[nodiscard]] Tensor to_tensor(std::string_view name, const std::shared_ptr<Device>& device) const;
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const { return metadata_; }
  [[nodiscard]] const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
  std::vector<std::byte> file_;  // the whole file
  std::size_t data_start_ = 0;   // 8 + header length
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// A float32 tensor on the host, to write.
struct HostTensor {
  std::string name;
  Shape shape;
  std::vector<float> values;  // shape.numel() values
};

// serialize_safetensors(tensors, metadata): the file's bytes (F32 tensors, in the given order,
// header padded with spaces to a multiple of 8 bytes). Error(kInvalidArgument) for duplicate or
// empty names, "__metadata__" as a name, or values whose count differs from the shape's.
[[nodiscard]] std::vector<std::byte> serialize_safetensors(
    const std::vector<HostTensor>& tensors, const std::map<std::string, std::string>& metadata = {});
// write_safetensors(path, tensors, metadata): serializes and writes the file (Error(kIo)).
void write_safetensors(const std::string& path, const std::vector<HostTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace tandem::nn
