// backend.h (private) — the interface between the runtime and its backends.
//
// A Backend is registered once per process (TANDEM_REGISTER_BACKEND in the backend's sources,
// compiled into libtandem so the registrar always runs). Device creation asks it for a
// BackendDevice, which makes streams and events, allocates memory, and owns the kernel table.
// Backends never see the stream pool, the leases or the encoding lock: the runtime applies those.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tandem/config.h"
#include "tandem/kernels.h"

namespace tandem {
class Stream;
}

namespace tandem::detail {

class StreamImpl;

// StreamImpl: one stream's execution engine.
// Encoding calls (begin/dispatch/end) come from the one thread holding the stream's Encoder;
// submit(), synchronize(), query() and stop() may come from any thread at any time.
class StreamImpl {
 public:
  virtual ~StreamImpl() = default;
  // Encoding: begin a command buffer, record host functions, submit it.
  virtual void begin_encoding() = 0;
  virtual void dispatch(std::function<void()> fn) = 0;
  // defer(fn): a release to run once the work encoded before it has completed (Encoder::defer).
  // Default: dispatch (host backends run it in stream order anyway).
  virtual void defer(std::function<void()> fn) { dispatch(std::move(fn)); }
  virtual void end_encoding() = 0;
  // submit(fn, always): a one-function command buffer appended to the stream from any thread,
  // outside encoding (frees, event records and waits). `always` runs it even when the stream is
  // faulted (frees must never be skipped), and at once on the caller's thread when the stream
  // was closed by draining. Never throws; work submitted after a stop is otherwise dropped.
  virtual void submit(std::function<void()> fn, bool always) noexcept = 0;
  // synchronize(): waits for everything submitted before the call; rethrows and clears the error.
  virtual void synchronize() = 0;
  [[nodiscard]] virtual bool query() const = 0;
  [[nodiscard]] virtual void* native_handle() const { return nullptr; }
  // run_graph(key, body, stream): see tandem/graph.h. `stream` is the public Stream of this
  // impl: a replay's launch holds EncodingLockGuard(stream), like any other encoding (the body's
  // own Encoders take it while it is captured). Default: no graphs, body() every time.
  virtual void run_graph(std::uint64_t key, const std::function<void()>& body, Stream& stream) {
    (void)stream;
    body();
  }
  // forget_graph(key): destroys key's cached graph, if any; the caller synchronized the stream
  // since its last replay (tandem/graph.h). Default: nothing is cached.
  virtual void forget_graph(std::uint64_t key) { (void)key; }
  // stop(mode): stop taking work; later encoding fails with Error(kDeviceClosed). Idempotent.
  //   kDrain   — run everything submitted, then end the executor (Device::close).
  //   kQuiesce — drop what is queued, let the work in hand finish (bounded wait), park the
  //              executor without joining it (process exit; Note [Device shutdown]).
  enum class StopMode { kDrain, kQuiesce };
  virtual void stop(StopMode mode) = 0;
};

// EventImpl: see tandem/event.h for the contract.
class EventImpl {
 public:
  virtual ~EventImpl() = default;
  virtual void record(StreamImpl& stream) = 0;
  virtual void wait_host() = 0;
  virtual void wait_stream(StreamImpl& stream) = 0;
  [[nodiscard]] virtual bool query() const = 0;
  [[nodiscard]] virtual double elapsed_ms(const EventImpl& end) const = 0;
};

struct MemoryStatsCounters;  // device_state.h

class BackendDevice {
 public:
  virtual ~BackendDevice() = default;
  // create_stream(index): stream `index` of the pool (0 = default stream).
  [[nodiscard]] virtual std::unique_ptr<StreamImpl> create_stream(int index) = 0;
  [[nodiscard]] virtual std::unique_ptr<EventImpl> create_event(bool timing) = 0;
  // allocate: memory usable in `stream` order; throws Error(kOutOfMemory).
  [[nodiscard]] virtual void* allocate(std::size_t bytes, StreamImpl& stream) = 0;
  // deallocate: frees in `stream` order, then calls on_freed() (which updates the stats).
  virtual void deallocate(void* p, std::size_t bytes, StreamImpl& stream,
                          std::function<void()> on_freed) = 0;
  [[nodiscard]] virtual const Kernels& kernels() const = 0;
  // allocate_host / deallocate_host: host memory for copies to and from this device (HostBuffer).
  // Default: plain aligned host memory. cuda: page-locked memory (cudaHostAlloc), which the copy
  // engines read and write directly. allocate_host throws Error(kOutOfMemory).
  [[nodiscard]] virtual void* allocate_host(std::size_t bytes);
  virtual void deallocate_host(void* p, std::size_t bytes) noexcept;
  // graph_bytes(): MemoryStats::graph_bytes. Any thread.
  [[nodiscard]] virtual std::int64_t graph_bytes() const { return 0; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  [[nodiscard]] virtual std::string name() const = 0;
  // device_count(): devices present now (0 when e.g. no GPU); never throws.
  [[nodiscard]] virtual int device_count() const = 0;
  // Why there are no devices, for messages ("no CUDA driver: cudaErrorInsufficientDriver").
  [[nodiscard]] virtual std::string unavailable_reason() const { return ""; }
  [[nodiscard]] virtual EncodingLockPolicy default_encoding_lock() const = 0;
  [[nodiscard]] virtual bool host_visible() const = 0;
  // Preference for Device::get_default() among available backends (higher wins).
  [[nodiscard]] virtual int default_priority() const { return 0; }
  [[nodiscard]] virtual std::unique_ptr<BackendDevice> open(int index,
                                                            const RuntimeConfig& config) = 0;
};

// The registry: filled during static initialisation, read-only afterwards.
void register_backend(std::unique_ptr<Backend> backend);
[[nodiscard]] const std::vector<std::unique_ptr<Backend>>& registered_backends();

struct BackendRegistrar {
  explicit BackendRegistrar(std::unique_ptr<Backend> b) { register_backend(std::move(b)); }
};

}  // namespace tandem::detail
