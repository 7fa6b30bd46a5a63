#include "backends/cuda/cuda_stream.h"

#include <utility>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/graph_arena.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem::backends::cuda {

// ---- HostErrors --------------------------------------------------------------------------------

void HostErrors::set(std::exception_ptr e) {
  MutexLock lock(mu);
  if (!error) error = std::move(e);
  faulted.store(true, std::memory_order_release);
}

std::exception_ptr HostErrors::take() {
  MutexLock lock(mu);
  faulted.store(false, std::memory_order_release);
  return std::exchange(error, nullptr);
}

std::exception_ptr HostErrors::peek() {
  MutexLock lock(mu);
  return error;
}

// ---- CudaStream --------------------------------------------------------------------------------

namespace {

// One host function in flight: owned by the driver between cudaLaunchHostFunc and its run.
struct HostTask {
  std::function<void()> fn;
  std::shared_ptr<HostErrors> errors;
  bool always;
};

void run_task(HostTask& task) {
  if (!task.always && task.errors->faulted.load(std::memory_order_acquire)) return;
  try {
    task.fn();
  } catch (...) {
    task.errors->set(std::current_exception());
  }
}

// One-shot: the driver owns the task until it runs.
void CUDART_CB run_host_task(void* arg) {
  std::unique_ptr<HostTask> task(static_cast<HostTask*>(arg));
  run_task(*task);
}

// A graph's host node: the task lives as long as the graph and runs at every replay.
void CUDART_CB run_graph_task(void* arg) { run_task(*static_cast<HostTask*>(arg)); }

}  // namespace

struct CudaStream::Graph {
  const cudaStream_t stream;
  CudaDevice& device;  // counts the arena's bytes (MemoryStats::graph_bytes)
  cudaGraphExec_t exec = nullptr;
  std::vector<std::unique_ptr<HostTask>> host_tasks;  // the host nodes' state
  std::vector<std::function<void()>> kept;            // deferred releases, run at destruction
  void* arena = nullptr;  // Note [Graph-owned memory]; info.arena_bytes long, counted by device
  GraphInfo info;

  Graph(cudaStream_t s, CudaDevice& d) : stream(s), device(d) {}
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  ~Graph() {
    if (exec) (void)cudaGraphExecDestroy(exec);
    for (auto& fn : kept) {
      try {
        fn();
      } catch (...) {
      }
    }
    if (arena) {
      // Graphs are dropped after a synchronize; synchronize again so that no replay can still
      // use the arena, whoever drops the graph.
      (void)cudaStreamSynchronize(stream);
      (void)cudaFree(arena);
      device.count_graph_bytes(-static_cast<std::int64_t>(info.arena_bytes));
    }
  }
};

CudaStream::CudaStream(CudaDevice& device, int index)
    : device_(device),
      index_(index),
      label_(device.name() + " stream " + std::to_string(index)),
      blocks_(device.config().cuda_block_cache),
      errors_(std::make_shared<HostErrors>()) {
  device_.make_current();
  int least = 0;
  int greatest = 0;
  TANDEM_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest), label_);
  TANDEM_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking,
                                                 index == 0 ? least : greatest),
                    label_);
  device_.add_block_cache(*this);  // last: the device may drain the cache from now on
}

CudaStream::~CudaStream() {
  // Destroyed with its device (Device::close drained it first). Errors cannot be reported here.
  if (stream_) (void)cudaStreamSynchronize(stream_);
  drop_graphs();
  reap();
  device_.remove_block_cache(*this);  // no drain from the device after this
  free_blocks(blocks_.drain());
  if (lt_) (void)cublasLtDestroy(lt_);
  if (cublas_) (void)cublasDestroy(cublas_);
  if (workspace_) (void)cudaFree(workspace_);
  if (stream_) (void)cudaStreamDestroy(stream_);
}

void CudaStream::begin_encoding() {
  throw_if_stopped();
  signal_.disarm();
  device_.make_current();
  if (capture_ == nullptr) reap();
}

void CudaStream::launch_host(std::function<void()> fn, bool always) {
  signal_.disarm();
  auto task = std::make_unique<HostTask>(HostTask{std::move(fn), errors_, always});
  if (capture_ != nullptr) {
    TANDEM_CUDA_CHECK(cudaLaunchHostFunc(stream_, run_graph_task, task.get()), label_);
    capture_->host_tasks.push_back(std::move(task));
    return;
  }
  TANDEM_CUDA_CHECK(cudaLaunchHostFunc(stream_, run_host_task, task.get()), label_);
  (void)task.release();  // owned by the driver until run_host_task
}

void CudaStream::dispatch(std::function<void()> fn) { launch_host(std::move(fn), false); }

void CudaStream::defer(std::function<void()> fn) {
  if (capture_ != nullptr) {
    capture_->kept.push_back(std::move(fn));
    return;
  }
  pending_.push_back(std::move(fn));
}

void CudaStream::end_encoding() {
  signal_.disarm();  // the encoder's kernels and copies follow any replay
  if (pending_.empty()) return;
  Deferred d{device_.events().acquire(false), std::move(pending_)};
  pending_.clear();
  const cudaError_t st = cudaEventRecord(d.event, stream_);
  if (st != cudaSuccess) {
    // Nothing marks the end of the work: wait for it here, then release.
    (void)cudaStreamSynchronize(stream_);
    device_.events().release(d.event, false);
    for (auto& fn : d.fns) {
      try {
        fn();
      } catch (...) {
      }
    }
    check(st, "cudaEventRecord(deferred, stream)", label_);
  }
  MutexLock lock(deferred_mu_);
  deferred_.push_back(std::move(d));
}

void CudaStream::reap() {
  for (;;) {
    Deferred d{};
    {
      MutexLock lock(deferred_mu_);
      if (deferred_.empty()) return;
      // cudaErrorNotReady: still pending. Any other result (done, or an error that the next
      // synchronize reports) lets the releases run.
      if (cudaEventQuery(deferred_.front().event) == cudaErrorNotReady) return;
      d = std::move(deferred_.front());
      deferred_.pop_front();
    }
    device_.events().release(d.event, false);
    for (auto& fn : d.fns) {
      try {
        fn();
      } catch (...) {
      }
    }
  }
}

void CudaStream::throw_if_stopped() const {
  if (!accepting_.load(std::memory_order_acquire)) {
    throw Error(ErrorKind::kDeviceClosed,
                label_ + " is stopped (device closed or process exiting); the work was not run");
  }
}

void CudaStream::run_graph(std::uint64_t key, const std::function<void()>& body,
                           Stream& stream) {
  if (!device_.config().cuda_graphs) {
    body();
    return;
  }
  throw_if_stopped();
  std::shared_ptr<Graph> graph;
  {
    MutexLock lock(graphs_mu_);
    if (auto it = graphs_.find(key); it != graphs_.end()) graph = it->second;
  }
  if (!graph) {
    std::shared_ptr<Graph> fresh = capture(body);  // outside the lock
    MutexLock lock(graphs_mu_);
    graph = graphs_.try_emplace(key, std::move(fresh)).first->second;  // first finisher wins
  }
  EncodingLockGuard lock(stream);  // a launch is encoding: the device's policy applies
  if (graph->info.ends_with_signal) {
    signal_.launch(graph->exec, stream_, graph->info.signalling);
  } else {
    TANDEM_CUDA_CHECK(cudaGraphLaunch(graph->exec, stream_), label_);
    signal_.disarm();
  }
}

namespace {

// Owns a cudaGraph_t until the end of the scope.
struct GraphHolder {
  cudaGraph_t g = nullptr;
  GraphHolder() = default;
  GraphHolder(const GraphHolder&) = delete;
  GraphHolder& operator=(const GraphHolder&) = delete;
  ~GraphHolder() {
    if (g) (void)cudaGraphDestroy(g);
  }
};

std::string bytes_text(std::size_t bytes) { return std::to_string(bytes) + " bytes"; }

}  // namespace

std::shared_ptr<CudaStream::Graph> CudaStream::capture(const std::function<void()>& body) {
  // Library handles and their workspace first: cudaMalloc is not allowed inside a capture.
  init_blas();
  device_.make_current();
  const bool signal = device_.config().cuda_graph_signal;
  if (signal) signal_.prepare();
  reap();
  std::size_t arena_bytes = 0;
  std::size_t first_needed = 0;
  for (int pass = 1;; ++pass) {
    auto graph = std::make_shared<Graph>(stream_, device_);
    if (arena_bytes > 0) {
      TANDEM_CUDA_CHECK(cudaMalloc(&graph->arena, arena_bytes), label_);
      graph->info.arena_bytes = arena_bytes;
      device_.count_graph_bytes(static_cast<std::int64_t>(arena_bytes));
    }
    CaptureMemory memory(*this, graph->arena, arena_bytes);
    GraphHolder g;
    try {
      g.g = record(body, *graph, memory, signal);
    } catch (...) {
      orphan_leaks(memory, *graph);
      throw;
    }
    if (!memory.live().empty()) {
      const std::size_t blocks = memory.live().size();
      const std::size_t bytes = memory.live_bytes();
      orphan_leaks(memory, *graph);
      throw Error(ErrorKind::kInvalidArgument,
                  "run_graph on " + label_ + ": the body returned with " + std::to_string(blocks) +
                      " block(s) of " + bytes_text(bytes) +
                      " that it allocated still allocated; memory allocated inside a graph body "
                      "must be freed before it returns (scope its Buffers and Tensors inside the "
                      "body; allocate outputs before run_graph). Nothing was cached; do not use "
                      "the escaped blocks (freeing them is harmless)");
    }
    if (!memory.overflowed()) {
      count_nodes(g.g, graph->info);
      graph->info.captures = pass;
      if (signal) {
        GraphInfo& info = graph->info;
        --info.kernel_nodes;  // the signal kernel
        info.ends_with_signal = true;
        info.signalling = info.memcpy_nodes == 0 && info.host_nodes == 0 &&
                          info.memory_nodes == 0 && info.other_nodes == 0;
      }
      TANDEM_CUDA_CHECK(cudaGraphInstantiate(&graph->exec, g.g, 0), label_);
      return graph;
    }
    if (pass >= 2) {
      throw Error(ErrorKind::kInvalidArgument,
                  "run_graph on " + label_ + ": the body allocated " +
                      bytes_text(memory.needed()) + " (256-byte aligned) when captured again, " +
                      bytes_text(first_needed) +
                      " the first time; a graph body must make the same allocations every time "
                      "it is called. Nothing was cached");
    }
    // The first capture measured what the body allocates: capture again with an arena that big.
    first_needed = arena_bytes = memory.needed();
  }
}

void CudaStream::free_blocks(const std::vector<BlockCache::Block>& blocks) noexcept {
  if (blocks.empty()) return;
  signal_.disarm();
  for (const auto& b : blocks) {
    if (cudaFreeAsync(b.p, stream_) != cudaSuccess) (void)cudaGetLastError();
  }
}

cudaGraph_t CudaStream::record(const std::function<void()>& body, Graph& graph,
                               CaptureMemory& memory, bool signal) {
  // No cached block goes into a graph, and no block the capture frees into the cache (Note
  // [Stream block cache]): the cache is off until the capture ended.
  blocks_.set_enabled(false);
  struct CacheBackOn {
    BlockCache& cache;
    ~CacheBackOn() { cache.set_enabled(true); }
  } cache_back_on{blocks_};
  TANDEM_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), label_);
  capture_ = &graph;
  cudaGraph_t g = nullptr;
  {
    CaptureScope scope(memory);
    try {
      body();
      if (signal) signal_.record(stream_);  // last: Note [Graph completion signal]
    } catch (...) {
      capture_ = nullptr;
      if (cudaStreamEndCapture(stream_, &g) == cudaSuccess && g) (void)cudaGraphDestroy(g);
      (void)cudaGetLastError();
      throw;
    }
  }
  capture_ = nullptr;
  TANDEM_CUDA_CHECK(cudaStreamEndCapture(stream_, &g), label_);
  return g;
}

void CudaStream::orphan_leaks(const CaptureMemory& memory, Graph& graph) {
  if (memory.live().empty()) return;
  void* arena = nullptr;
  if (memory.live_in_arena()) {
    arena = std::exchange(graph.arena, nullptr);
    device_.count_graph_bytes(-static_cast<std::int64_t>(graph.info.arena_bytes));  // orphaned
  }
  device_.adopt_orphans(memory.live(), arena);
}

void CudaStream::count_nodes(cudaGraph_t g, GraphInfo& info) const {
  std::size_t n = 0;
  TANDEM_CUDA_CHECK(cudaGraphGetNodes(g, nullptr, &n), label_);
  std::vector<cudaGraphNode_t> nodes(n);
  TANDEM_CUDA_CHECK(cudaGraphGetNodes(g, nodes.data(), &n), label_);
  for (std::size_t i = 0; i < n; ++i) {
    cudaGraphNodeType type{};
    TANDEM_CUDA_CHECK(cudaGraphNodeGetType(nodes[i], &type), label_);
    switch (type) {
      case cudaGraphNodeTypeKernel: ++info.kernel_nodes; break;
      case cudaGraphNodeTypeMemcpy: ++info.memcpy_nodes; break;
      case cudaGraphNodeTypeHost: ++info.host_nodes; break;
      case cudaGraphNodeTypeMemAlloc:
      case cudaGraphNodeTypeMemFree: ++info.memory_nodes; break;
      default: ++info.other_nodes; break;
    }
  }
}

std::optional<CudaStream::GraphInfo> CudaStream::graph_info(std::uint64_t key) const {
  MutexLock lock(graphs_mu_);
  if (auto it = graphs_.find(key); it != graphs_.end()) return it->second->info;
  return std::nullopt;
}

std::size_t CudaStream::graphs_cached() const {
  MutexLock lock(graphs_mu_);
  return graphs_.size();
}

void CudaStream::drop_graphs() {
  std::map<std::uint64_t, std::shared_ptr<Graph>> graphs;
  {
    MutexLock lock(graphs_mu_);
    graphs.swap(graphs_);
  }
  graphs.clear();  // outside the lock: the releases may free Buffers
}

void CudaStream::forget_graph(std::uint64_t key) {
  std::shared_ptr<Graph> graph;
  {
    MutexLock lock(graphs_mu_);
    auto it = graphs_.find(key);
    if (it == graphs_.end()) return;
    graph = std::move(it->second);
    graphs_.erase(it);
  }
  graph.reset();  // outside the lock: the releases may free Buffers
}

void CudaStream::submit(std::function<void()> fn, bool always) noexcept {
  if (accepting_.load(std::memory_order_acquire)) {
    try {
      launch_host(fn, always);
      return;
    } catch (...) {
      // The stream is unusable (sticky error): fall through to running it inline if it must run.
    }
  }
  if (!always) return;
  try {
    (void)cudaStreamSynchronize(stream_);  // keep stream order: everything before has run
    fn();
  } catch (...) {
  }
}

void CudaStream::synchronize() {
  if (signal_.wait()) {
    reap();  // the replay completed, and everything before it (Note [Graph completion signal])
  } else {
    const cudaError_t st = cudaStreamSynchronize(stream_);
    reap();  // also after an error: the work is over either way
    check(st, "cudaStreamSynchronize(stream)", label_, ErrorKind::kKernel);
  }
  if (errors_->faulted.load(std::memory_order_acquire)) {
    if (auto e = errors_->take()) std::rethrow_exception(e);
  }
}

bool CudaStream::query() const {
  // A signalling replay that stored its word: all that may still run is the signal kernel
  // itself (it stores, then retires), which is no work of the caller's.
  if (signal_.reached()) return true;
  // cudaErrorNotReady: work pending. Any other error also ends the wait: synchronize reports it.
  return cudaStreamQuery(stream_) != cudaErrorNotReady;
}

void CudaStream::stop(StopMode mode) {
  accepting_.store(false, std::memory_order_release);
  if (mode == StopMode::kDrain) {
    (void)cudaStreamSynchronize(stream_);
    drop_graphs();
    reap();
  }
  // kQuiesce: the GPU finishes what it has; nothing is joined (Note [Device shutdown]).
}

bool CudaStream::capturing() const {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  return cudaStreamIsCapturing(stream_, &status) == cudaSuccess &&
         status == cudaStreamCaptureStatusActive;
}

void CudaStream::init_blas() {
  std::call_once(blas_once_, [this] {
    device_.make_current();
    TANDEM_CUDA_CHECK(cudaMalloc(&workspace_, kBlasWorkspaceBytes), label_);
    TANDEM_CUDA_CHECK(cublasCreate(&cublas_), label_);
    TANDEM_CUDA_CHECK(cublasSetStream(cublas_, stream_), label_);
    TANDEM_CUDA_CHECK(cublasSetWorkspace(cublas_, workspace_, kBlasWorkspaceBytes), label_);
    TANDEM_CUDA_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST), label_);
    TANDEM_CUDA_CHECK(cublasLtCreate(&lt_), label_);
  });
}

cublasHandle_t CudaStream::cublas() {
  init_blas();
  return cublas_;
}

cublasLtHandle_t CudaStream::cublas_lt() {
  init_blas();
  return lt_;
}

void* CudaStream::blas_workspace() {
  init_blas();
  return workspace_;
}

CudaStream& stream_of(Encoder& enc) {
  // Only CudaDevice creates the streams of a cuda device (see the precondition in the header).
  return static_cast<CudaStream&>(enc.stream().impl());
}

}  // namespace tandem::backends::cuda
