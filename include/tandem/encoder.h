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
  // defer(fn): records a *release* — `fn` runs on some host thread once the work committed
  // before it has completed, at the latest before the stream's next synchronize() returns, and
  // always (also on a faulted stream). Unlike dispatch it may drop the last reference to a
  // Buffer (on cuda, host functions must not call CUDA) and costs no host callback on cuda (an
  // event, reaped at the next encode or synchronize of the stream). Use it to keep inputs alive
  // until the work that reads them has run. Precondition: not committed.
  void defer(std::function<void()> fn);
  // commit(): ends encoding and submits the command buffer. Idempotent.
  void commit();

 private:
  // throw_if_committed(call): the precondition of dispatch and defer; `call` names the caller.
  void throw_if_committed(const char* call) const;

  Stream& stream_;
  EncodingLockGuard lock_;
  bool committed_ = false;
};

}  // namespace tandem
