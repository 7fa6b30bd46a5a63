// batch_queue.cpp — BatchQueue: the public face of the Scheduler, with the request types that
// complete a future or call a callback.
#include "tandem/serve/batch_queue.h"

#include <string>
#include <utility>
#include <vector>

#include "serve/batch_runner.h"
#include "serve/graph_batch.h"
#include "serve/request_pool.h"
#include "serve/scheduler.h"
#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/event.h"
#include "tandem/nn/models.h"
#include "tandem/stream.h"

namespace tandem::serve {

namespace detail {
namespace {

template <class T>
T take_output(Request& r);
template <>
nn::Tensor take_output<nn::Tensor>(Request& r) {
  return std::move(r.device_out);
}
template <>
nn::HostTensor take_output<nn::HostTensor>(Request& r) {
  return std::move(r.host_out);
}

// Requests and their promises' shared state and result come from the submitting thread's
// block cache (Note [Request pool] in request_pool.h): one pooled block each instead of a malloc
// that an executor frees into another thread's arena.
template <class T>
class PromiseRequest final : public Request {
 public:
  std::promise<T> promise{std::allocator_arg, PoolAllocator<T>{}};
  void deliver(std::exception_ptr error) noexcept override {
    try {
      if (error) {
        promise.set_exception(std::move(error));
      } else {
        promise.set_value(take_output<T>(*this));
      }
    } catch (...) {
      // set_* throws only when already satisfied, which the state machine rules out.
    }
    // Drop our reference to the shared state now: the caller's future then holds the last one,
    // so the result (and an exception object in it) is freed on the caller's thread.
    std::promise<T> release(std::move(promise));  // leaves `promise` without a state
  }
};

template <class T>
class CallbackRequest final : public Request {
 public:
  std::function<void(Result<T>)> callback;
  void deliver(std::exception_ptr error) noexcept override {
    try {
      Result<T> result;
      if (error) {
        result.error = std::move(error);
      } else {
        result.value = take_output<T>(*this);
      }
      callback(std::move(result));
    } catch (...) {
      // A callback's exception has nowhere to go: dropped, as documented.
    }
    callback = nullptr;  // release what it captured, on this thread
  }
};

void set_input(Request& r, nn::Tensor&& input) {
  r.host = false;
  if (input.defined()) {
    r.shape = input.shape();
    // Order the executor's reads after the work committed so far on this thread's stream (where
    // the caller computed the input), when any is still pending.
    Device& device = input.device();
    Stream* mine = nullptr;
    try {
      mine = &device.current_stream();
    } catch (const Error&) {
      // No stream for this thread (pool exhausted, device closed): nothing of ours to wait for;
      // the scheduler reports a closed device.
    }
    if (mine && !mine->query()) {
      r.in_ready = std::make_unique<Event>(device);
      r.in_ready->record(*mine);
    }
  }
  r.device_in = std::move(input);
}

void set_input(Request& r, nn::HostTensor&& input) {
  r.host = true;
  r.shape = input.shape;
  r.host_in = std::move(input);
}

template <class T>
std::future<T> submit_future(Scheduler& s, T&& input, const SubmitOptions& options) {
  auto r = std::allocate_shared<PromiseRequest<T>>(PoolAllocator<PromiseRequest<T>>{});
  auto future = r->promise.get_future();
  try {
    set_input(*r, std::move(input));
  } catch (...) {  // recording the input's event failed (device closed): the request's error
    r->promise.set_exception(std::current_exception());
    return future;
  }
  s.submit(r, options);
  return future;
}

template <class T>
void submit_callback(Scheduler& s, T&& input, std::function<void(Result<T>)> callback,
                     const SubmitOptions& options) {
  if (!callback) {
    throw Error(ErrorKind::kInvalidArgument, "BatchQueue::submit: the callback is empty");
  }
  auto r = std::allocate_shared<CallbackRequest<T>>(PoolAllocator<CallbackRequest<T>>{});
  r->callback = std::move(callback);
  try {
    set_input(*r, std::move(input));
  } catch (...) {
    Result<T> result;
    result.error = std::current_exception();
    r->callback(std::move(result));
    return;
  }
  s.submit(r, options);
}

}  // namespace
}  // namespace detail

namespace {

void check_model(const std::shared_ptr<const nn::Model>& model) {
  if (!model) throw Error(ErrorKind::kInvalidArgument, "BatchQueue: the model is null");
}

// plain_run(forward, device): executors run run_merged_batch, each with its own staging memory,
// reused across its batches.
detail::MakeRunBatch plain_run(ForwardFn forward, std::shared_ptr<Device> device) {
  return [forward = std::move(forward), device = std::move(device)]() -> detail::RunBatch {
    auto staging = std::make_shared<detail::Staging>();
    return [forward, device, staging](Stream& stream, const std::vector<detail::RequestPtr>& batch) {
      detail::run_merged_batch(forward, device, stream, *staging, batch);
    };
  };
}

// graph_run(model, options): executors run a GraphBatcher of their own (Note [Graph batching]),
// built on the executor thread with its leased stream.
detail::MakeRunBatch graph_run(std::shared_ptr<const nn::Model> model,
                               const BatchQueueOptions& options) {
  return [model = std::move(model), options]() -> detail::RunBatch {
    auto batcher = std::make_shared<detail::GraphBatcher>(
        model, model->device()->current_stream(), detail::graph_buckets(options));
    return [batcher](Stream& stream, const std::vector<detail::RequestPtr>& batch) {
      batcher->run(stream, batch);
    };
  };
}

// start_shards(make_run, device, options): validates `options` (Error(kConfig)) and starts its
// shards (Note [Batch queue shards]): executors and capacity split as evenly as they go, the
// first shards taking the remainders; one QueueStats for all. A shard that fails to start
// throws; the shards started before it are stopped as the vector unwinds.
std::vector<std::unique_ptr<detail::Scheduler>> start_shards(const detail::MakeRunBatch& make_run,
                                                             const std::shared_ptr<Device>& device,
                                                             const BatchQueueOptions& options) {
  detail::check_options(options);
  const int s = options.shards;
  if (s < 1 || s > options.instances) {
    throw Error(ErrorKind::kConfig, "BatchQueueOptions.shards = " + std::to_string(s) +
                                        " is out of range; allowed: 1..instances (= " +
                                        std::to_string(options.instances) +
                                        "): each shard needs an executor of its own");
  }
  if (options.max_queue_size < static_cast<std::size_t>(s)) {
    throw Error(ErrorKind::kConfig,
                "BatchQueueOptions.max_queue_size = " + std::to_string(options.max_queue_size) +
                    " is below shards = " + std::to_string(s) +
                    ": each shard admits its share of max_queue_size, which must be >= 1; "
                    "raise max_queue_size or lower shards");
  }
  auto stats = std::make_shared<detail::QueueStats>();
  std::vector<std::unique_ptr<detail::Scheduler>> shards;
  for (int i = 0; i < s; ++i) {
    BatchQueueOptions mine = options;
    mine.shards = 1;
    mine.instances = options.instances / s + (i < options.instances % s ? 1 : 0);
    const auto size = static_cast<std::size_t>(s);
    mine.max_queue_size = options.max_queue_size / size +
                          (static_cast<std::size_t>(i) < options.max_queue_size % size ? 1 : 0);
    shards.push_back(std::make_unique<detail::Scheduler>(make_run, device, std::move(mine), stats));
  }
  return shards;
}

}  // namespace

BatchQueue::BatchQueue(std::shared_ptr<const nn::Model> model, BatchQueueOptions options)
    : options_(std::move(options)) {
  check_model(model);
  auto device = model->device();
  auto make_run = options_.graphs
                      ? graph_run(model, options_)
                      : plain_run([model](const nn::Tensor& x) { return model->forward(x); },
                                  device);
  shards_ = start_shards(make_run, device, options_);
}

BatchQueue::BatchQueue(ForwardFn forward, std::shared_ptr<Device> device, BatchQueueOptions options)
    : options_(std::move(options)) {
  if (!forward) throw Error(ErrorKind::kInvalidArgument, "BatchQueue: forward function is empty");
  if (options_.graphs) {
    throw Error(ErrorKind::kConfig,
                "BatchQueueOptions.graphs = true needs a queue built from a model "
                "(BatchQueue(model, options)): graph batching replays the model's forward_into "
                "into fixed memory, which a forward function cannot do; set graphs = false");
  }
  shards_ = start_shards(plain_run(std::move(forward), device), device, options_);
}

BatchQueue::~BatchQueue() {
  try {
    stop();
  } catch (...) {
    // stop() throws only on a queue thread; a destructor there is a documented misuse.
  }
}

detail::Scheduler& BatchQueue::shard() const {
  if (shards_.size() == 1) return *shards_.front();
  return *shards_[detail::this_thread_number() % shards_.size()];
}

std::future<nn::Tensor> BatchQueue::submit(nn::Tensor input, SubmitOptions options) {
  return detail::submit_future(shard(), std::move(input), options);
}
std::future<nn::HostTensor> BatchQueue::submit(nn::HostTensor input, SubmitOptions options) {
  return detail::submit_future(shard(), std::move(input), options);
}
void BatchQueue::submit_callback(nn::Tensor input,
                                 std::function<void(Result<nn::Tensor>)> callback,
                                 SubmitOptions options) {
  detail::submit_callback(shard(), std::move(input), std::move(callback), options);
}
void BatchQueue::submit_callback(nn::HostTensor input,
                                 std::function<void(Result<nn::HostTensor>)> callback,
                                 SubmitOptions options) {
  detail::submit_callback(shard(), std::move(input), std::move(callback), options);
}

void BatchQueue::stop(StopMode mode) {
  // Refuse before stopping any shard: a callback of one shard must not stop (and join) the rest.
  for (const auto& s : shards_) s->check_not_own_thread();
  // Every shard stops taking (and, on kCancel, cancels) before any is waited for: a shard whose
  // batch runs long must not let another keep starting queued requests meanwhile.
  for (const auto& s : shards_) s->begin_stop(mode);
  for (const auto& s : shards_) s->join();
}
void BatchQueue::stop() { stop(options_.stop_mode); }
BatchQueueMetrics BatchQueue::metrics() const {
  BatchQueueMetrics m = shards_.front()->stats().metrics();  // shared by every shard
  for (const auto& s : shards_) m.queued += s->admitted();
  return m;
}
const BatchQueueOptions& BatchQueue::options() const { return options_; }
const std::shared_ptr<Device>& BatchQueue::device() const { return shards_.front()->device(); }

}  // namespace tandem::serve
