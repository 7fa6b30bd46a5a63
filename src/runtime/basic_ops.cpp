#include "tandem/basic_ops.h"

#include <memory>
#include <vector>

#include "tandem/buffer.h"
#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/kernels.h"
#include "tandem/stream.h"

namespace tandem {

namespace {

std::size_t floats(const Buffer& b) { return b.size_bytes() / sizeof(float); }

void check_same_size(const char* op, const Buffer& a, const Buffer& b) {
  if (a.size_bytes() != b.size_bytes()) {
    throw Error(ErrorKind::kInvalidArgument, std::string(op) + ": buffer sizes differ (" +
                                                 std::to_string(a.size_bytes()) + " vs " +
                                                 std::to_string(b.size_bytes()) + " bytes)");
  }
}

void check_device(const char* op, Stream& stream, const Buffer& b) {
  if (b.empty()) return;
  if (&b.device() != &stream.device()) {
    throw Error(ErrorKind::kInvalidArgument, std::string(op) + ": buffer on " + b.device().name() +
                                                 " used on a stream of " +
                                                 stream.device().name());
  }
}

}  // namespace

void fill(Stream& stream, Buffer& y, float value) {
  check_device("fill", stream, y);
  Encoder enc(stream);
  stream.device().kernels().fill(enc, y.as<float>(), floats(y), value);
}
void fill(Buffer& y, float value) { fill(y.device().current_stream(), y, value); }

void scale(Stream& stream, Buffer& y, const Buffer& x, float a) {
  check_same_size("scale", y, x);
  check_device("scale", stream, y);
  check_device("scale", stream, x);
  Encoder enc(stream);
  stream.device().kernels().scale(enc, y.as<float>(), x.as<float>(), floats(y), a);
}
void scale(Buffer& y, const Buffer& x, float a) { scale(y.device().current_stream(), y, x, a); }

void add(Stream& stream, Buffer& y, const Buffer& a, const Buffer& b) {
  check_same_size("add", y, a);
  check_same_size("add", y, b);
  check_device("add", stream, y);
  check_device("add", stream, a);
  check_device("add", stream, b);
  Encoder enc(stream);
  stream.device().kernels().add(enc, y.as<float>(), a.as<float>(), b.as<float>(), floats(y));
}
void add(Buffer& y, const Buffer& a, const Buffer& b) { add(y.device().current_stream(), y, a, b); }

void copy(Stream& stream, Buffer& dst, const Buffer& src) {
  check_same_size("copy", dst, src);
  check_device("copy", stream, dst);
  check_device("copy", stream, src);
  Encoder enc(stream);
  stream.device().kernels().copy(enc, dst.data(), src.data(), dst.size_bytes());
}
void copy(Buffer& dst, const Buffer& src) { copy(dst.device().current_stream(), dst, src); }

void sum(Stream& stream, Buffer& out, const Buffer& x) {
  if (out.size_bytes() < sizeof(float)) {
    throw Error(ErrorKind::kInvalidArgument,
                "sum: output buffer holds " + std::to_string(out.size_bytes()) +
                    " bytes; it needs at least 4 (one float)");
  }
  check_device("sum", stream, out);
  check_device("sum", stream, x);
  Encoder enc(stream);
  stream.device().kernels().sum(enc, out.as<float>(), x.as<float>(), floats(x));
}
void sum(Buffer& out, const Buffer& x) { sum(out.device().current_stream(), out, x); }

void upload(Stream& stream, Buffer& dst, std::span<const float> host) {
  if (host.size_bytes() != dst.size_bytes()) {
    throw Error(ErrorKind::kInvalidArgument, "upload: host span of " +
                                                 std::to_string(host.size_bytes()) +
                                                 " bytes into a buffer of " +
                                                 std::to_string(dst.size_bytes()) + " bytes");
  }
  check_device("upload", stream, dst);
  // Staged: the caller's memory may go away once upload() returns. The staging copy is released
  // in stream order, after the copy has run.
  auto staged = std::make_shared<std::vector<float>>(host.begin(), host.end());
  Encoder enc(stream);
  stream.device().kernels().copy_from_host(enc, dst.data(), staged->data(), host.size_bytes());
  enc.defer([staged] {});
}

void download(Stream& stream, std::span<float> host, const Buffer& src) {
  if (host.size_bytes() != src.size_bytes()) {
    throw Error(ErrorKind::kInvalidArgument, "download: buffer of " +
                                                 std::to_string(src.size_bytes()) +
                                                 " bytes into a host span of " +
                                                 std::to_string(host.size_bytes()) + " bytes");
  }
  check_device("download", stream, src);
  Encoder enc(stream);
  stream.device().kernels().copy_to_host(enc, host.data(), src.data(), host.size_bytes());
}

}  // namespace tandem
