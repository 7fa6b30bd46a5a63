// safetensors.cpp — the safetensors reader/writer (safetensors.h), hardened for hostile input.
#include "tandem/nn/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "tandem/error.h"

namespace tandem::nn {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; tandem reads it in place");

namespace {

// Element sizes of the safetensors dtypes (the format's full list).
std::optional<std::size_t> element_size(std::string_view dtype) {
  struct Entry {
    std::string_view name;
    std::size_t size;
  };
  static constexpr Entry kDtypes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
      {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
      {"F64", 8},  {"I64", 8}, {"U64", 8}};
  for (const auto& e : kDtypes) {
    if (e.name == dtype) return e.size;
  }
  return std::nullopt;
}

// The deepest nesting a valid header needs: root object (0) > tensor entry (1) > shape (2).
constexpr int kMaxJsonDepth = 3;

struct Parser {
  const std::string& origin;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::kFormat, "safetensors file '" + origin + "': " + what);
  }
  [[noreturn]] void fail_tensor(const std::string& name, const std::string& what) const {
    fail("tensor '" + name + "': " + what);
  }

  std::size_t unsigned_value(const nlohmann::json& v, const std::string& name,
                             const char* field) const {
    if (!v.is_number_unsigned()) {
      fail_tensor(name, std::string(field) + " holds " + v.dump() +
                            ", not a non-negative integer");
    }
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(SIZE_MAX)) fail_tensor(name, std::string(field) + " is too large");
    return static_cast<std::size_t>(u);
  }

  SafetensorsEntry entry(const std::string& name, const nlohmann::json& v,
                         std::size_t data_size) const {
    if (name.empty()) fail("a tensor has an empty name");
    if (!v.is_object()) fail_tensor(name, "entry is " + std::string(v.type_name()) + ", not an object");
    SafetensorsEntry e;
    e.name = name;
    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail_tensor(name, "missing or non-string field 'dtype'");
    e.dtype = dt->get<std::string>();
    const auto esize = element_size(e.dtype);
    if (!esize) fail_tensor(name, "unknown dtype '" + e.dtype + "'");

    const auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail_tensor(name, "missing or non-array field 'shape'");
    if (sh->size() > Shape::kMaxRank) {
      fail_tensor(name, "shape has " + std::to_string(sh->size()) + " dimensions; at most " +
                            std::to_string(Shape::kMaxRank) + " are supported");
    }
    std::size_t dims[Shape::kMaxRank] = {};
    std::size_t numel = 1;
    for (std::size_t i = 0; i < sh->size(); ++i) {
      dims[i] = unsigned_value((*sh)[i], name, "shape");
      if (__builtin_mul_overflow(numel, dims[i], &numel)) fail_tensor(name, "shape " + sh->dump() + " overflows");
    }
    e.shape = Shape(std::span<const std::size_t>(dims, sh->size()));
    std::size_t nbytes = 0;
    if (__builtin_mul_overflow(numel, *esize, &nbytes)) fail_tensor(name, "shape " + sh->dump() + " overflows");

    const auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2) {
      fail_tensor(name, "missing field 'data_offsets' or not [begin, end]");
    }
    e.begin = unsigned_value((*off)[0], name, "data_offsets");
    e.end = unsigned_value((*off)[1], name, "data_offsets");
    if (e.begin > e.end || e.end > data_size) {
      fail_tensor(name, "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                            "] lie outside the data section of " + std::to_string(data_size) +
                            " bytes (file truncated or header corrupt)");
    }
    if (e.end - e.begin != nbytes) {
      fail_tensor(name, "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                            "] span " + std::to_string(e.end - e.begin) + " bytes, but " + e.dtype +
                            " " + e.shape.to_string() + " needs " + std::to_string(nbytes));
    }
    return e;
  }
};

}  // namespace

std::optional<DType> SafetensorsEntry::as_dtype() const {
  if (dtype == "F32") return DType::kFloat32;
  if (dtype == "F16") return DType::kFloat16;
  if (dtype == "BF16") return DType::kBFloat16;
  return std::nullopt;
}

SafetensorsFile SafetensorsFile::parse(std::span<const std::byte> bytes, std::string origin) {
  SafetensorsFile f;
  f.origin_ = std::move(origin);
  const Parser p{f.origin_};
  if (bytes.size() < 8) {
    p.fail("is " + std::to_string(bytes.size()) + " bytes long; a safetensors file starts with "
           "an 8-byte header length");
  }
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);  // little-endian (static_assert above)
  if (n > kMaxHeaderBytes) {
    p.fail("header length " + std::to_string(n) + " exceeds the limit of " +
           std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (n > bytes.size() - 8) {
    p.fail("header length " + std::to_string(n) + " exceeds the " +
           std::to_string(bytes.size() - 8) + " bytes after the length field (truncated file?)");
  }
  if (n < 2) p.fail("header length " + std::to_string(n) + " is too small for a JSON object");
  const auto* header = reinterpret_cast<const char*>(bytes.data() + 8);
  if (header[0] != '{') p.fail("header does not start with '{'");

  nlohmann::json j;
  try {
    // The callback bounds nesting, so hostile deep nesting cannot exhaust the stack (parse or
    // destruction); it throws to abort the parse.
    j = nlohmann::json::parse(
        header, header + n,
        [&p](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
          if (depth > kMaxJsonDepth) p.fail("header JSON is nested deeper than a valid header");
          return true;
        });
  } catch (const nlohmann::json::exception& e) {
    p.fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) p.fail("header is not a JSON object");

  const std::size_t data_size = bytes.size() - 8 - static_cast<std::size_t>(n);
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) p.fail("__metadata__ is not an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) p.fail("__metadata__ field '" + mk + "' is not a string");
        f.metadata_.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    f.entries_.push_back(p.entry(key, value, data_size));
  }
  std::sort(f.entries_.begin(), f.entries_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // The tensors must tile the data section: no overlap, no gap, nothing left over.
  std::size_t at = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const auto& e : f.entries_) {
    if (e.begin < at) {
      p.fail("tensors '" + prev->name + "' and '" + e.name + "' overlap (bytes [" +
             std::to_string(e.begin) + ", " + std::to_string(at) + "))");
    }
    if (e.begin > at) {
      p.fail("bytes [" + std::to_string(at) + ", " + std::to_string(e.begin) +
             ") of the data section belong to no tensor (before tensor '" + e.name + "')");
    }
    at = e.end;
    prev = &e;
  }
  if (at != data_size) {
    p.fail("the tensors cover " + std::to_string(at) + " bytes, but the data section has " +
           std::to_string(data_size));
  }
  f.file_.assign(bytes.begin(), bytes.end());
  f.data_start_ = 8 + static_cast<std::size_t>(n);
  return f;
}

SafetensorsFile SafetensorsFile::read(const std::string& path) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) {
    throw Error(errno == ENOENT ? ErrorKind::kNotFound : ErrorKind::kIo,
                "cannot open safetensors file '" + path + "': " + std::strerror(errno));
  }
  std::vector<std::byte> bytes;
  // Sized by what the file system holds, never by the header: read in chunks to the end.
  std::byte chunk[1 << 16];
  for (;;) {
    const std::size_t got = std::fread(chunk, 1, sizeof chunk, fp);
    bytes.insert(bytes.end(), chunk, chunk + got);
    if (got < sizeof chunk) break;
  }
  const bool failed = std::ferror(fp) != 0;
  const int err = errno;
  std::fclose(fp);
  if (failed) {
    throw Error(ErrorKind::kIo, "reading safetensors file '" + path + "' failed: " + std::strerror(err));
  }
  SafetensorsFile f = parse(bytes, path);
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::span<const std::byte> SafetensorsFile::bytes(const SafetensorsEntry& e) const {
  return std::span<const std::byte>(file_).subspan(data_start_ + e.begin, e.end - e.begin);
}

std::vector<float> SafetensorsFile::floats(std::string_view name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) {
    throw Error(ErrorKind::kFormat, "safetensors file '" + origin_ + "' has no tensor '" +
                                        std::string(name) + "'");
  }
  if (e->dtype != "F32") {
    throw Error(e->as_dtype() ? ErrorKind::kInvalidArgument : ErrorKind::kFormat,
                "safetensors file '" + origin_ + "': tensor '" + e->name + "' has dtype " +
                    e->dtype + "; tandem reads F32 (float32) only so far: convert it "
                    "(e.g. tensor.float() in PyTorch) before saving");
  }
  std::vector<float> v(e->shape.numel());
  const auto b = bytes(*e);
  if (!b.empty()) std::memcpy(v.data(), b.data(), b.size());
  return v;
}

Tensor SafetensorsFile::to_tensor(std::string_view name,
                                  const std::shared_ptr<Device>& device) const {
  const std::vector<float> v = floats(name);
  return Tensor::from_host(device, find(name)->shape, v);
}

std::vector<std::byte> serialize_safetensors(const std::vector<HostTensor>& tensors,
                                             const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__" || header.contains(t.name)) {
      throw Error(ErrorKind::kInvalidArgument,
                  "serialize_safetensors: tensor name '" + t.name +
                      "' is empty, reserved or used twice");
    }
    if (t.values.size() != t.shape.numel()) {
      throw Error(ErrorKind::kInvalidArgument,
                  "serialize_safetensors: tensor '" + t.name + "' has " +
                      std::to_string(t.values.size()) + " values for shape " + t.shape.to_string());
    }
    const std::size_t nbytes = t.values.size() * sizeof(float);
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (std::size_t d : t.shape.dims()) shape.push_back(d);
    header[t.name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  std::vector<std::byte> out(8 + h.size() + offset);
  const std::uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, h.data(), h.size());
  std::size_t at = 8 + h.size();
  for (const auto& t : tensors) {
    if (!t.values.empty()) std::memcpy(out.data() + at, t.values.data(), t.values.size() * sizeof(float));
    at += t.values.size() * sizeof(float);
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<HostTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::vector<std::byte> bytes = serialize_safetensors(tensors, metadata);
  std::FILE* fp = std::fopen(path.c_str(), "wb");
  if (!fp) {
    throw Error(ErrorKind::kIo, "cannot create safetensors file '" + path + "': " + std::strerror(errno));
  }
  const std::size_t put = std::fwrite(bytes.data(), 1, bytes.size(), fp);
  const int err = errno;
  const bool closed = std::fclose(fp) == 0;
  if (put != bytes.size() || !closed) {
    throw Error(ErrorKind::kIo, "writing safetensors file '" + path + "' failed after " +
                                    std::to_string(put) + " of " + std::to_string(bytes.size()) +
                                    " bytes: " + std::strerror(err));
  }
}

}  // namespace tandem::nn
