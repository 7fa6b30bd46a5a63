#include "tandem/error.h"

namespace tandem {

std::string_view to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return "invalid_argument";
    case ErrorKind::kConfig: return "config";
    case ErrorKind::kNotFound: return "not_found";
    case ErrorKind::kPoolExhausted: return "pool_exhausted";
    case ErrorKind::kDeviceClosed: return "device_closed";
    case ErrorKind::kOutOfMemory: return "out_of_memory";
    case ErrorKind::kKernel: return "kernel";
    case ErrorKind::kBackend: return "backend";
    case ErrorKind::kFormat: return "format";
    case ErrorKind::kIo: return "io";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kCancelled: return "cancelled";
    case ErrorKind::kQueueFull: return "queue_full";
    case ErrorKind::kInternal: return "internal";
  }
  return "unknown";
}

}  // namespace tandem
