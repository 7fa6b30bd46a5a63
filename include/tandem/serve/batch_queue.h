// batch_queue.h — BatchQueue: dynamic batching. Requests submitted from any number of threads are
// merged along the batch dimension, run as one forward on one stream, and each caller gets its
// own output rows back.
//
// Note [Dynamic batching]
// A request is a float32 tensor whose first dimension is the batch (its "rows"); the rest of its
// shape is its *sample shape*. Only requests with the same sample shape are merged. Executor
// threads (`instances`, each with its own exclusively leased stream, so that batches overlap on
// the device) take batches from the queue: starting from the oldest request of the highest
// priority level, in priority order and FIFO within a level, as many rows as fit in
// `max_batch_size` (stopping at the first request that does not fit, so nothing jumps the line).
// A batch is dispatched
//   - at once when it holds the largest preferred batch size (or max_batch_size without
//     preferred sizes; a request larger than every preferred size is such a batch on its own),
//     or when max_queue_delay is zero;
//   - else when its oldest request has waited max_queue_delay (or the queue is draining): then
//     with the largest preferred batch size it can fill that holds the oldest request, or
//     everything it has when there is none. (The same choice when max_queue_delay is zero.)
// The executor concatenates the inputs into one tensor on its stream (a copy kernel per tensor
// request; host requests gathered on the host and uploaded with one copy per run of consecutive
// host requests), calls the forward once, copies each request's output rows out (into a new
// tensor of its own, or back to host memory), synchronizes its stream, and only then completes
// the requests: a completed output is ready to read from any stream or thread. Within a batch,
// requests are completed grouped by submitting thread, each thread's newest first: a client that
// waits for its oldest request then wakes once per batch, not once per request (each wake-up is
// a system call on the executor, and the queue's rate at many clients was bound by them).
//  - HostTensor outputs reuse the input's host storage when it is large enough (the output of a
//    request is written over its input's values, which the queue no longer needs), so the
//    executor allocates no host memory per request.
//
// Request lifecycle (each arrow is taken exactly once; the terminal states complete the
// request's future or call its callback exactly once):
//
// | state     | how it is entered                         | leaves to                          |
// |-----------|-------------------------------------------|------------------------------------|
// | blocked   | submit(), queue full, overflow kBlock      | queued; timed out; cancelled        |
// | queued    | submit() with room                         | running; timed out; cancelled       |
// | running   | an executor took it into a batch           | completed; failed                   |
// | completed | its batch ran; output delivered            | (terminal) counted `completed`      |
// | failed    | its batch raised an error                  | (terminal) that error; `failed`     |
// | timed out | deadline passed while blocked or queued    | (terminal) Error(kTimeout)          |
// | cancelled | stop(kCancel) while queued; submit after   | (terminal) Error(kCancelled)        |
// |           | stop(); blocked when stop() came           |                                    |
// | rejected  | submit(): queue full under kReject         | (terminal) Error(kQueueFull)        |
// |           | (kQueueFull), or not runnable: more rows   | or Error(kInvalidArgument)          |
// |           | than max_batch_size, no batch dimension,   |                                    |
// |           | zero rows, bad priority or timeout, an     |                                    |
// |           | undefined tensor, another device, a dtype  |                                    |
// |           | other than float32, a host tensor whose    |                                    |
// |           | values do not match its shape              |                                    |
// A running request is never timed out or cancelled: it completes with its output even when its
// deadline passes while its batch runs.
//
// Note [Graph batching]
// With BatchQueueOptions::graphs, an executor owns, for the model's sample shape, a page-locked
// host staging pair and a device input/output pair of max_batch_size rows each, all at fixed
// addresses, and one graph per bucket B (captured with run_graph when it starts): a copy kernel
// from the first B rows of the host input staging (page-locked memory is device-addressable) into
// the device input, model->forward_into() on those B rows, a copy kernel from the device output
// back into the host output staging. A batch of n <= B rows of host requests is gathered into the
// staging, the graph of the smallest bucket B >= n replays (one driver call), the executor waits
// (on cuda the graph's completion signal: a spin, no driver call) and splits rows 0..n-1 out. The
// padding rows n..B-1 hold whatever the staging held (finite values of earlier batches, zeros at
// first); their outputs are computed and dropped: a model's sample i depends only on input
// sample i (nn::Model::forward). A batch with a Tensor request, or whose sample shape is not the
// model's, runs the plain path above (the forward then raises its shape error).
//
// Oversized requests: a request with more rows than max_batch_size is rejected (not split): a
// split request would tie its latency to several batches and its failure to any of them; send
// such inputs to the model directly, or raise max_batch_size.
//
// Threading: every public method is thread-safe. Callbacks and promise completions run on an
// executor thread (normal completion, failures), on the queue's timer thread (timeouts), on the
// thread calling stop() (cancellations), or on the submitting thread before submit() returns
// (rejections, submit after stop, a blocked submit that times out or is cancelled). Callbacks must not block for long and must not call stop() or
// destroy the queue; an exception a callback throws is caught and dropped.
//
// Errors: a model error (an exception from the forward, or a kernel error raised on the stream)
// completes every request of that batch with that exception; the queue keeps serving.
//
// Note [Batch queue shards]
// One queue is one lock and one intake shared by every submitter and executor; on a 16-core host
// with 64 submitting threads and 8 executors that capped the host side near 2M requests/s
// (executors waited for the lock a fifth of their time), 4 shards of 2 executors ran 3.6-3.8M,
// and the MLP on an H100 went from 1.5-1.7M to 2.4M samples/s (docs/benchmarks.md, "Sharded
// queues"). With `shards` = S > 1 the BatchQueue is S independent queues (each with the whole of
// Note [Dynamic batching] and the state table above), over which the executors are spread
// (instances / S each, the first instances % S shards one more) and max_queue_size likewise (each
// shard admits its share).
// A submitting thread always uses the same shard (its thread number modulo S), so:
//  - a thread's requests keep their order, and a batch's completions still group by thread;
//  - priorities, FIFO order, max_queue_delay, preferred sizes and the full-queue check apply
//    within a shard: a high-priority request of one shard does not overtake the requests of
//    another, and one shard may reject (or block) while another has room;
//  - the load is balanced only as well as the submitting threads are spread: one thread (or
//    threads all landing on one shard) gets the executors of one shard, not all of them.
// stop(), metrics() and the callbacks' threads cover every shard: metrics() is one snapshot of
// counters and histograms shared by all shards (`queued` summed over them). Use shards for many
// (tens of) submitting threads on a many-core host; keep 1 for few submitters or strict
// queue-wide priorities.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "tandem/nn/safetensors.h"
#include "tandem/nn/tensor.h"
#include "tandem/serve/metrics.h"

namespace tandem {
class Device;
}  // namespace tandem
namespace tandem::nn {
class Model;
}  // namespace tandem::nn

namespace tandem::serve {

// Inputs and outputs are nn::Tensor (on the queue's device) or nn::HostTensor (host memory),
// float32, batch dimension first.
//  - Tensor inputs: the queue orders its reads after the work committed so far on the
//    *submitting thread's* stream (an Event, when that stream is busy), so a tensor the caller
//    just computed may be submitted at once. A tensor produced on another thread's stream must be
//    synchronized (or ordered with an Event) by the caller first. Tensor outputs are new tensors
//    (the request's own rows, copied out of the batch) allocated on the executor's stream and
//    ready when delivered: readable from any stream or thread without further synchronization.
//  - HostTensor inputs need no stream on the calling thread (the executor uploads them straight
//    into the merged batch) and give a HostTensor back (its name copied from the input).
//
// ForwardFn: runs the model on one merged batch, like nn::Model::forward: called on an executor
// thread, it encodes its work on the calling thread's stream (Device::current_stream(), which is
// the executor's leased stream) and returns the output, whose dimension 0 must equal the input's.
// It may throw; the batch then fails.
using ForwardFn = std::function<nn::Tensor(const nn::Tensor& input)>;

enum class Overflow {
  kReject,  // a full queue completes the request at once with Error(kQueueFull)
  kBlock,   // submit() waits for room (until the request's deadline, or stop())
};

enum class StopMode {
  kDrain,   // run every queued request (deadlines still apply), then stop
  kCancel,  // complete every queued request with Error(kCancelled), then stop
};

struct BatchQueueOptions {
  // Most rows in one batch (>= 1). A request with more rows is rejected.
  std::int64_t max_batch_size = 64;
  // Batch sizes to aim for (e.g. those with captured CUDA graphs), each in [1, max_batch_size];
  // empty: aim for max_batch_size. See Note [Dynamic batching].
  std::vector<std::int64_t> preferred_batch_sizes;
  // How long the oldest request of a forming batch may wait for a fuller one. Zero: run whatever
  // is queued as soon as an executor is free (batches still grow while executors are busy).
  std::chrono::microseconds max_queue_delay{0};
  // Priority levels (>= 1): 0 is the highest. Strict between levels, FIFO within one.
  int priority_levels = 1;
  // Deadline of requests that do not set their own (nullopt: none). Measured from submit().
  std::optional<std::chrono::microseconds> default_timeout;
  // Most requests queued (waiting, not yet running) at once (>= 1), and what submit() does when
  // the queue is full.
  std::size_t max_queue_size = 65536;
  Overflow overflow = Overflow::kReject;
  // Executor threads, each with its own leased stream (1..30 on a default 32-stream pool).
  int instances = 1;
  // Independent queues the executors and submitting threads are split over (1..instances;
  // Note [Batch queue shards]): each thread submits to one shard, and a batch holds requests of
  // one shard only. 1: one queue, every executor serves every request.
  int shards = 1;
  // What stop() without an argument and the destructor do with queued requests.
  StopMode stop_mode = StopMode::kDrain;
  // Graph batching (Note [Graph batching]; queues built from a model only, else Error(kConfig)):
  // each batch of HostTensor requests runs as the replay of a graph (tandem/graph.h) that holds
  // the upload from the executor's page-locked staging, the model's forward and the download,
  // captured per *bucket*: batches are padded up to the smallest bucket that holds them. Buckets:
  // preferred_batch_sizes and max_batch_size, or, without preferred sizes, the powers of two
  // below max_batch_size and max_batch_size itself (at most 4096 buckets, else the constructor
  // throws Error(kConfig)). Every executor captures every bucket when it starts (the
  // constructor waits for that), and destroys its graphs when it stops. Pays off where graphs
  // replay (cuda); elsewhere the same work runs directly, padding included (and the start runs
  // each bucket's forward once).
  bool graphs = false;
};

struct SubmitOptions {
  int priority = 0;  // in [0, priority_levels)
  // This request's deadline, from submit(); overrides BatchQueueOptions::default_timeout.
  std::optional<std::chrono::microseconds> timeout;
};

// Result<T>: what a callback receives: the output, or the error that ended the request.
template <class T>
struct Result {
  T value;
  std::exception_ptr error;  // null on success
  [[nodiscard]] bool ok() const { return error == nullptr; }
  // get(): the value; rethrows the error.
  T& get() {
    if (error) std::rethrow_exception(error);
    return value;
  }
};

namespace detail {
class Scheduler;
}

class BatchQueue {
 public:
  // BatchQueue(model, options): batches model->forward() on model->device() (as graph replays
  // with options.graphs: Note [Graph batching]); keeps the model alive.
  explicit BatchQueue(std::shared_ptr<const nn::Model> model, BatchQueueOptions options = {});
  // BatchQueue(forward, device, options): the same for any forward function on `device`;
  // options.graphs must be false (Error(kConfig)).
  // Both start options.instances executor threads, each of which leases its stream on the device
  // (Device::current_stream()). Throw Error(kConfig) for bad options (naming the field and the
  // allowed values), Error(kInvalidArgument) for a null model/device or an empty function, and
  // Error(kPoolExhausted) when the pool cannot give every instance a stream (nothing is left
  // running then).
  BatchQueue(ForwardFn forward, std::shared_ptr<Device> device, BatchQueueOptions options = {});
  // ~BatchQueue(): stop(options.stop_mode). Must not run on an executor thread (in a callback).
  ~BatchQueue();
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  // submit(input): queues `input` and returns the future of its output rows. Never throws for a
  // request it cannot run: the future carries the error (see the state table). Blocks only under
  // Overflow::kBlock with a full queue. The future never ends in std::future_error.
  [[nodiscard]] std::future<nn::Tensor> submit(nn::Tensor input, SubmitOptions options = {});
  [[nodiscard]] std::future<nn::HostTensor> submit(nn::HostTensor input,
                                                   SubmitOptions options = {});
  // submit(input, callback, options): the same, completing by calling `callback` (anything
  // callable as void(Result<T>)) exactly once; see Threading above for the thread. (A template
  // so that submit(x, {.priority = 1}) stays unambiguous.)
  template <class F>
    requires std::is_invocable_v<F&, Result<nn::Tensor>>
  void submit(nn::Tensor input, F&& callback, SubmitOptions options = {}) {
    submit_callback(std::move(input),
                    std::function<void(Result<nn::Tensor>)>(std::forward<F>(callback)), options);
  }
  template <class F>
    requires std::is_invocable_v<F&, Result<nn::HostTensor>>
  void submit(nn::HostTensor input, F&& callback, SubmitOptions options = {}) {
    submit_callback(std::move(input),
                    std::function<void(Result<nn::HostTensor>)>(std::forward<F>(callback)),
                    options);
  }
  // submit_callback(input, callback, options): the callback form with a std::function; throws
  // Error(kInvalidArgument) for an empty one.
  void submit_callback(nn::Tensor input, std::function<void(Result<nn::Tensor>)> callback,
                       SubmitOptions options = {});
  void submit_callback(nn::HostTensor input, std::function<void(Result<nn::HostTensor>)> callback,
                       SubmitOptions options = {});

  // stop(mode): stops taking requests (later submits complete with Error(kCancelled)), wakes
  // blocked submitters (cancelled), drains or cancels what is queued, waits for running batches,
  // and joins the executor threads. Idempotent and thread-safe; stop(kCancel) after or during a
  // drain cancels what is still queued. Throws Error(kInvalidArgument) when called on one of the
  // queue's own threads (a callback).
  void stop(StopMode mode);
  void stop();  // stop(options().stop_mode)

  [[nodiscard]] BatchQueueMetrics metrics() const;
  [[nodiscard]] const BatchQueueOptions& options() const;
  [[nodiscard]] const std::shared_ptr<Device>& device() const;

 private:
  // shard(): the calling thread's shard (Note [Batch queue shards]).
  [[nodiscard]] detail::Scheduler& shard() const;

  BatchQueueOptions options_;  // the whole queue's, as given
  std::vector<std::unique_ptr<detail::Scheduler>> shards_;  // options_.shards of them
};

}  // namespace tandem::serve
