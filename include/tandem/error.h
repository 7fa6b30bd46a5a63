// error.h — tandem::Error, the one exception family of tandem.
//
// Every library error is a tandem::Error (or derived) with a stable ErrorKind, thrown at the API
// boundary. Errors raised on worker threads (a kernel on a CPU stream, a batch in a queue) are
// captured and rethrown to the thread that waits for the work (synchronize, event wait, future):
// never lost, never std::terminate. Messages say what failed, with which values, and what to do.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace tandem {

enum class ErrorKind {
  kInvalidArgument,  // a bad argument to an API call (shape mismatch, out-of-range index, ...)
  kConfig,           // a bad TANDEM_* environment value or Config field
  kNotFound,         // unknown backend/device/model/file
  kPoolExhausted,    // no worker stream free within the wait policy
  kDeviceClosed,     // use of a Device (or its streams/buffers) after Device::close()
  kOutOfMemory,      // allocation failed; the message gives the size and the pool's state
  kKernel,           // a kernel failed while executing on a stream
  kBackend,          // a driver / library call failed (CUDA, cuBLAS, BLAS)
  kFormat,           // malformed input file (safetensors, ...)
  kIo,               // file system errors
  kTimeout,          // a wait or a request exceeded its deadline
  kCancelled,        // work cancelled before it ran (queue stop)
  kQueueFull,        // a bounded queue rejected the request
  kInternal,         // a broken invariant inside tandem: a bug, please report it
};

// Stable lower-case name of a kind ("pool_exhausted"), for logs and the CLI.
[[nodiscard]] std::string_view to_string(ErrorKind kind) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace tandem
