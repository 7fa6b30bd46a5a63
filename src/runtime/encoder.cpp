#include "tandem/encoder.h"

#include <string>
#include <utility>

#include "runtime/backend.h"
#include "runtime/device_state.h"
#include "tandem/device.h"
#include "tandem/error.h"

namespace tandem {

EncodingLockGuard::EncodingLockGuard(Stream& stream) TANDEM_NO_THREAD_SAFETY_ANALYSIS {
  const EncodingLockPolicy policy = stream.device().encoding_lock_policy();
  if (policy == EncodingLockPolicy::kGlobal) {
    global_ = &detail::global_encoding_mutex();
    global_->lock_spinning();  // sections are short (encoding, a launch): spin, then sleep
  }
  if (policy == EncodingLockPolicy::kStream || stream.index() == 0) {
    stream_ = &stream.encoding_mutex();
    stream_->lock_spinning();
  }
}

EncodingLockGuard::~EncodingLockGuard() { unlock(); }

void EncodingLockGuard::unlock() TANDEM_NO_THREAD_SAFETY_ANALYSIS {
  if (stream_) std::exchange(stream_, nullptr)->unlock();
  if (global_) std::exchange(global_, nullptr)->unlock();
}

namespace {
Stream& checked(Stream& stream) {
  stream.device().state().throw_if_closed();
  return stream;
}
}  // namespace

Encoder::Encoder(Stream& stream) : stream_(checked(stream)), lock_(stream) {
  stream_.impl().begin_encoding();
}

Encoder::~Encoder() {
  try {
    commit();
  } catch (...) {
    // A commit can only fail when the device closed meanwhile; the work is dropped with it.
  }
}

void Encoder::throw_if_committed(const char* call) const {
  if (committed_) {
    throw Error(ErrorKind::kInvalidArgument,
                std::string("Encoder::") + call + " after commit on stream " +
                    std::to_string(stream_.index()) + " of " + stream_.device().name() +
                    "; create a new Encoder");
  }
}

void Encoder::dispatch(std::function<void()> fn) {
  throw_if_committed("dispatch");
  stream_.impl().dispatch(std::move(fn));
}

void Encoder::defer(std::function<void()> fn) {
  throw_if_committed("defer");
  stream_.impl().defer(std::move(fn));
}

void Encoder::commit() {
  if (committed_) return;
  committed_ = true;
  stream_.impl().end_encoding();
  lock_.unlock();
}

}  // namespace tandem
