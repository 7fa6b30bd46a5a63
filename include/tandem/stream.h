// stream.h — Stream, StreamPool and StreamLease.
//
// Note [Stream pool]
// Each Device has TANDEM_STREAM_POOL_SIZE streams (default 32). Stream 0 is the default stream,
// shared by everyone and serialized by its own mutex; streams 1..N-1 are worker streams, each
// owned by at most one thread at a time. Ownership comes from a lock-free bitmask free list:
// lease() claims the lowest free bit with compare-and-swap; release sets it again. A thread's
// first device call leases a worker stream and caches it thread-locally (Device::current_stream);
// at thread exit the stream is synchronized and returned. Unlike PyTorch's CUDA pool, streams are
// never silently shared when the pool runs out: TANDEM_STREAM_POOL_WAIT_MS decides —
//   0 (default): throw Error(kPoolExhausted) at once;   -1: wait for a release;
//   N > 0: wait up to N ms, then throw.
// A waiting thread is woken by every release (no lost wake-ups: release publishes the bit with
// seq_cst, then notifies under the wait mutex if anyone waits).
//
// Stream states: idle (no work) -> busy (committed work pending) -> idle; an error raised by a
// kernel makes the stream *faulted* until synchronize() rethrows it (and clears it).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "tandem/mutex.h"
#include "tandem/thread_annotations.h"

namespace tandem {

class Device;
namespace detail {
class StreamImpl;
}

class Stream {
 public:
  Stream(Device& device, int index, std::unique_ptr<detail::StreamImpl> impl);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  [[nodiscard]] int index() const { return index_; }
  [[nodiscard]] Device& device() const { return device_; }
  // synchronize(): blocks until all work committed so far has run; rethrows (once) the first
  // error a kernel raised since the last synchronize. Thread-safe.
  void synchronize();
  // query(): true when all committed work has run. Never blocks.
  [[nodiscard]] bool query() const;
  // native_handle(): cudaStream_t on cuda, nullptr on host backends.
  [[nodiscard]] void* native_handle() const;

  [[nodiscard]] detail::StreamImpl& impl() { return *impl_; }
  // The per-stream encoding mutex (policy `stream`, and always for the shared default stream).
  [[nodiscard]] Mutex& encoding_mutex() TANDEM_RETURN_CAPABILITY(encoding_mu_) {
    return encoding_mu_;
  }

 private:
  Device& device_;
  const int index_;
  std::unique_ptr<detail::StreamImpl> impl_;
  Mutex encoding_mu_;
};

class StreamLease;

class StreamPool {
 public:
  // StreamPool(device, size, wait_ms): see Note [Stream pool]. Streams are created lazily.
  StreamPool(Device& device, int size, std::int64_t wait_ms);
  ~StreamPool();
  StreamPool(const StreamPool&) = delete;
  StreamPool& operator=(const StreamPool&) = delete;

  [[nodiscard]] int size() const { return size_; }
  // leased(): worker streams leased now (a snapshot).
  [[nodiscard]] int leased() const;
  [[nodiscard]] Stream& default_stream();
  // lease(): an exclusive worker stream, per the wait policy (Error(kPoolExhausted)).
  [[nodiscard]] StreamLease lease();
  // try_lease(): a lease if one is free now, else nullopt. Never blocks.
  [[nodiscard]] std::optional<StreamLease> try_lease();
  // stream(i): stream i (0 = default), created on first use. Precondition: 0 <= i < size().
  [[nodiscard]] Stream& stream(int index);
  // For Device::synchronize/close: every stream created so far.
  [[nodiscard]] std::vector<Stream*> created_streams();

 private:
  friend class StreamLease;
  [[nodiscard]] int try_claim();  // -1 when none is free
  void release(int index);

  Device& device_;
  const int size_;
  const std::int64_t wait_ms_;
  // Bit i set <=> worker stream i is free. Writers: try_claim (CAS, acq_rel) and release
  // (fetch_or, seq_cst, pairs with the seq_cst load of waiters_ in release and the waiter's
  // seq_cst increment of waiters_ before it re-checks free_).
  std::atomic<std::uint64_t> free_;
  std::atomic<int> waiters_{0};
  Mutex wait_mu_;
  CondVar wait_cv_;
  Mutex create_mu_ TANDEM_ACQUIRED_AFTER(wait_mu_);
  // Streams, created lazily under create_mu_; a published pointer never changes.
  std::vector<std::atomic<Stream*>> streams_;
  std::vector<std::unique_ptr<Stream>> owned_ TANDEM_GUARDED_BY(create_mu_);
};

// StreamLease: exclusive ownership of one worker stream for its lifetime (RAII). On destruction
// the stream is synchronized (errors are dropped: synchronize explicitly to see them) and
// returned to the pool. Move-only.
//
// | state    | stream()   | on destruction         |
// |----------|------------|------------------------|
// | held     | the stream | synchronize, release   |
// | moved-from | precondition violated | nothing     |
class [[nodiscard]] StreamLease {
 public:
  StreamLease(StreamLease&& other) noexcept;
  StreamLease& operator=(StreamLease&& other) noexcept;
  StreamLease(const StreamLease&) = delete;
  StreamLease& operator=(const StreamLease&) = delete;
  ~StreamLease();

  [[nodiscard]] Stream& stream() const { return *stream_; }
  [[nodiscard]] int index() const { return stream_->index(); }

 private:
  friend class StreamPool;
  StreamLease(StreamPool* pool, Stream* stream) : pool_(pool), stream_(stream) {}
  void reset() noexcept;
  StreamPool* pool_ = nullptr;
  Stream* stream_ = nullptr;
};

}  // namespace tandem
