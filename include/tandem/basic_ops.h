// basic_ops.h — the runtime kernels on Buffers, encoded on a stream (default: the calling
// thread's stream of the buffer's device). Each call is one command buffer. Sizes are checked:
// a mismatch is Error(kInvalidArgument) naming both sizes. Results are read after synchronize().
#pragma once

#include <cstddef>
#include <span>

namespace tandem {

class Buffer;
class Stream;

// Element counts: size_bytes / sizeof(float).
void fill(Buffer& y, float value);
void fill(Stream& stream, Buffer& y, float value);
void scale(Buffer& y, const Buffer& x, float a);  // y = x * a
void scale(Stream& stream, Buffer& y, const Buffer& x, float a);
void add(Buffer& y, const Buffer& a, const Buffer& b);  // y = a + b
void add(Stream& stream, Buffer& y, const Buffer& a, const Buffer& b);
void copy(Buffer& dst, const Buffer& src);
void copy(Stream& stream, Buffer& dst, const Buffer& src);
void sum(Buffer& out, const Buffer& x);  // out[0] = sum(x); out holds at least one float
void sum(Stream& stream, Buffer& out, const Buffer& x);
// upload: copies `host` (staged: the caller may reuse its memory at once).
void upload(Stream& stream, Buffer& dst, std::span<const float> host);
// download: the host memory must stay valid until the stream has run the copy (synchronize).
void download(Stream& stream, std::span<float> host, const Buffer& src);

}  // namespace tandem
