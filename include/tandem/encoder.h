// encoder.h — Encoder: the only way to put work on a stream.
//
// An Encoder takes the encoding lock of its stream's device policy (EncodingLockPolicy: none,
// stream, global; the shared default stream is always serialized per stream), begins a command
// buffer, records work into it, and commit() (or the destructor) hands the command buffer to the
// stream and releases the lock. Kernels (kernels.h) record through it.
//
// | state     | dispatch()  | commit()              | destructor |
// |-----------|-------------|-----------------------|------------|
// | encoding  | records     | -> committed, unlocks | commits    |
// | committed | Error       | no-op                 | nothing    |
//
// Threading: one Encoder is used by one thread. Encoders of different streams run concurrently
// unless the policy is global. Throws Error(kDeviceClosed) when the device is closed.
#pragma once

#include <functional>

#include "tandem/stream.h"

namespace tandem {

// EncodingLockGuard: holds the encoding lock that `stream`'s device policy asks for, for its
// scope: the process-wide mutex under `global`; the stream's mutex under `stream`, and always for
// the shared default stream (stream 0); nothing under `none`. Lock order: global, then stream.
// Non-copyable. (Conditional locking is beyond clang's static analysis; the guard is the one
// place that is unchecked, by design.)
class [[nodiscard]] EncodingLockGuard {
 public:
  explicit EncodingLockGuard(Stream& stream);
  ~EncodingLockGuard();
  EncodingLockGuard(const EncodingLockGuard&) = delete;
  EncodingLockGuard& operator=(const EncodingLockGuard&) = delete;
  // unlock(): releases early (idempotent).
  void unlock();

 private:
  Mutex* global_ = nullptr;
  Mutex* stream_ = nullptr;
};

class [[nodiscard]] Encoder {
 public:
  explicit Encoder(Stream& stream);
  ~Encoder();
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  [[nodiscard]] Stream& stream() const { return stream_; }
  // dispatch(fn): records a host function that runs in stream order (on host backends, the
  // stream's worker thread; on cuda, a host callback). An exception it throws becomes the stream's
  // error, delivered by the next synchronize() or event wait. Precondition: not committed.
  void dispatch(std::function<void()> fn);
  // commit(): ends encoding and submits the command buffer. Idempotent.
  void commit();

 private:
  Stream& stream_;
  EncodingLockGuard lock_;
  bool committed_ = false;
};

}  // namespace tandem
