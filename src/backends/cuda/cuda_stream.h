// cuda_stream.h (private) — CudaStream: one pool slot of a cuda device, a non-blocking
// cudaStream_t plus the per-stream library state (cuBLAS and cuBLASLt handles, their workspace).
//
// Note [CUDA streams]
// - The cudaStream_t is created with the StreamPool's slot (the pool creates slots lazily, on
//   first lease), non-blocking (no implicit sync with the legacy stream), with a priority:
//   worker streams (1..N-1) the greatest the device offers, the shared default stream (0) the
//   least, so latency-bound per-thread work overtakes background work.
// - Kernels launch straight onto the stream while an Encoder holds it; begin/end_encoding only
//   make the stream's device current. Encoder::dispatch(fn) becomes cudaLaunchHostFunc: `fn`
//   runs on a CUDA driver thread in stream order and must not call CUDA (the driver forbids it).
// - Host functions may throw: the first exception makes the stream *faulted*; later host
//   functions are skipped (unless `always`) until synchronize() rethrows the error and clears it.
//   Device-side errors come from cudaStreamSynchronize as Error(kKernel).
// - Library handles: created on first use by the thread encoding on the stream; only that thread
//   uses them (exclusive lease; stream 0 is serialized by its encoding mutex), so a cuBLAS handle
//   is never shared between threads. The workspace (kBlasWorkspaceBytes) is a plain cudaMalloc,
//   made before any capture on this stream (run_graph creates the handles first).
// - Encoder::defer(fn) costs no host callback: the command buffer's deferred releases wait
//   behind one cudaEvent (from the device's pool) recorded at end_encoding, and run on the
//   thread that next encodes on or synchronizes the stream once the event completed.
// - Graphs (run_graph, tandem/graph.h): cached per stream by key; capture mode thread-local;
//   host functions recorded during a capture stay alive with the graph (they run at every
//   replay), deferred releases too (until the graph is destroyed: stop(kDrain) or destruction).
//   Allocations that the body makes on this stream come from an arena owned by the graph, so a
//   graph holds kernels and host nodes only, no memory nodes; a key whose body allocates is
//   captured twice on first use (once to measure the arena). Note [Graph-owned memory] in
//   graph_arena.h. Graphs (and their arenas) are destroyed only after a stream synchronize.
// - Blocks freed on the stream are kept for its next allocations of the same size (Note [Stream
//   block cache] in block_cache.h; off while it captures).
// - A synchronize right after the replay of a kernel-only graph spins on a word the graph's last
//   kernel stores into mapped host memory instead of calling cudaStreamSynchronize (Note [Graph
//   completion signal] in completion_signal.h; TANDEM_CUDA_GRAPH_SIGNAL).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends/cuda/block_cache.h"
#include "backends/cuda/completion_signal.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/lt_cache.h"
#include "runtime/backend.h"
#include "tandem/mutex.h"

namespace tandem {
class Encoder;
}

namespace tandem::backends::cuda {

class CaptureMemory;
class CudaDevice;

// HostErrors: the first exception a host function of a stream threw. Shared with the host
// functions in flight and with events recorded on the stream (they may outlive nothing but the
// process; the shared_ptr keeps it valid for both).
struct HostErrors {
  Mutex mu;
  std::exception_ptr error TANDEM_GUARDED_BY(mu);
  // faulted: error != nullptr. Writers: set() and take(), under mu (release); readers on the
  // driver thread skip work with an acquire load, without the mutex.
  std::atomic<bool> faulted{false};

  void set(std::exception_ptr e) TANDEM_EXCLUDES(mu);
  [[nodiscard]] std::exception_ptr take() TANDEM_EXCLUDES(mu);  // clears
  [[nodiscard]] std::exception_ptr peek() TANDEM_EXCLUDES(mu);
};

class CudaStream : public detail::StreamImpl {
 public:
  static constexpr std::size_t kBlasWorkspaceBytes = std::size_t{32} << 20;  // cuBLAS: 32 MiB on sm_90

  CudaStream(CudaDevice& device, int index);
  ~CudaStream() override;

  void begin_encoding() override;
  void dispatch(std::function<void()> fn) override;
  void defer(std::function<void()> fn) override;
  void end_encoding() override;
  void run_graph(std::uint64_t key, const std::function<void()>& body, Stream& stream) override
      TANDEM_EXCLUDES(graphs_mu_);
  void forget_graph(std::uint64_t key) override TANDEM_EXCLUDES(graphs_mu_);
  void submit(std::function<void()> fn, bool always) noexcept override;
  void synchronize() override;
  [[nodiscard]] bool query() const override;
  [[nodiscard]] void* native_handle() const override { return stream_; }
  void stop(StopMode mode) override;

  [[nodiscard]] cudaStream_t get() const { return stream_; }
  [[nodiscard]] int index() const { return index_; }
  [[nodiscard]] CudaDevice& device() const { return device_; }
  // label(): "cuda:0 stream 3", for messages.
  [[nodiscard]] const std::string& label() const { return label_; }
  [[nodiscard]] const std::shared_ptr<HostErrors>& host_errors() const { return errors_; }
  // disarm_signal(): work other than a graph replay was enqueued on this stream from outside
  // CudaStream (an allocation, a free, an event wait): the next synchronize must not rely on
  // the graph completion signal. Any thread.
  void disarm_signal() noexcept { signal_.disarm(); }

  // cuBLAS / cuBLASLt handles bound to this stream and its workspace; created on first call.
  // Encoding thread only.
  [[nodiscard]] cublasHandle_t cublas();
  [[nodiscard]] cublasLtHandle_t cublas_lt();
  [[nodiscard]] void* blas_workspace();
  // block_cache(): blocks freed on this stream, for its next allocations (Note [Stream block
  // cache]). Any thread.
  [[nodiscard]] BlockCache& block_cache() { return blocks_; }
  // free_blocks(blocks): cudaFreeAsync of each on this stream (errors dropped: a lost context
  // leaks them). Any thread.
  void free_blocks(const std::vector<BlockCache::Block>& blocks) noexcept;
  // lt_plans(): this stream's cuBLASLt plans by shape (lt_cache.h). Encoding thread only.
  [[nodiscard]] LtPlanCache& lt_plans() { return lt_plans_; }
  // Whether a capture is in progress on this stream (graph recording).
  [[nodiscard]] bool capturing() const;
  // graphs_cached(): graphs in this stream's cache (tests).
  [[nodiscard]] std::size_t graphs_cached() const TANDEM_EXCLUDES(graphs_mu_);
  // GraphInfo: what a cached graph holds, counted on the captured graph before instantiation.
  struct GraphInfo {
    std::size_t kernel_nodes = 0;  // the body's kernels (not the completion signal kernel)
    std::size_t memcpy_nodes = 0;
    std::size_t host_nodes = 0;
    std::size_t memory_nodes = 0;  // allocation and free nodes: 0 with graph-owned memory
    std::size_t other_nodes = 0;
    std::size_t arena_bytes = 0;  // the graph's arena (0: the body allocates nothing)
    int captures = 0;             // times body was captured for it (1, or 2 with an arena)
    bool ends_with_signal = false;  // the graph's last node is the completion signal kernel
    bool signalling = false;        // ... and a synchronize after a replay waits on it
  };
  // graph_info(key): the cached graph of `key`, or nullopt (tests, diagnostics).
  [[nodiscard]] std::optional<GraphInfo> graph_info(std::uint64_t key) const
      TANDEM_EXCLUDES(graphs_mu_);

  // Per-capture state: what the graph's host nodes and deferred releases need to outlive, the
  // graph's arena.
  struct Graph;

 private:
  void throw_if_stopped() const;
  // capture(body): a new instantiated graph of body's work (Note [Graph-owned memory]).
  [[nodiscard]] std::shared_ptr<Graph> capture(const std::function<void()>& body);
  // record(body, graph, memory, signal): one capture of body, allocations through `memory`,
  // ending with the completion signal kernel when `signal`.
  [[nodiscard]] cudaGraph_t record(const std::function<void()>& body, Graph& graph,
                                   CaptureMemory& memory, bool signal);
  // orphan_leaks(memory, graph): hands the blocks still live to the device (with the arena).
  void orphan_leaks(const CaptureMemory& memory, Graph& graph);
  void count_nodes(cudaGraph_t g, GraphInfo& info) const;
  void init_blas();
  void launch_host(std::function<void()> fn, bool always);
  // reap(): runs the deferred releases whose event completed, in order. Any thread.
  void reap() TANDEM_EXCLUDES(deferred_mu_);
  void drop_graphs() TANDEM_EXCLUDES(graphs_mu_);

  CudaDevice& device_;
  const int index_;
  const std::string label_;
  CompletionSignal signal_{label_};  // Note [Graph completion signal]
  BlockCache blocks_;                // Note [Stream block cache]; after label_ (constructor)
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<HostErrors> errors_;
  // accepting_: false once stop() ran. Writer: stop() (release); readers: encoding entry points.
  std::atomic<bool> accepting_{true};

  // Deferred releases: pending_ collects the command buffer's (encoding thread only); at
  // end_encoding they move behind one event into deferred_.
  std::vector<std::function<void()>> pending_;
  struct Deferred {
    cudaEvent_t event;
    std::vector<std::function<void()>> fns;
  };
  Mutex deferred_mu_;
  std::deque<Deferred> deferred_ TANDEM_GUARDED_BY(deferred_mu_);

  // Graphs by key. capture_ is set while this stream captures (encoding thread only).
  mutable Mutex graphs_mu_;
  std::map<std::uint64_t, std::shared_ptr<Graph>> graphs_ TANDEM_GUARDED_BY(graphs_mu_);
  Graph* capture_ = nullptr;

  std::once_flag blas_once_;
  LtPlanCache lt_plans_;  // encoding thread only
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
};

// stream_of(enc): the CudaStream an Encoder of a cuda device records into (precondition: the
// encoder's stream belongs to a cuda device; the runtime's ops check devices before encoding).
[[nodiscard]] CudaStream& stream_of(Encoder& enc);

}  // namespace tandem::backends::cuda
