// batch_queue.cpp — BatchQueue: the public face of the Scheduler, with the request types that
// complete a future or call a callback.
#include "tandem/serve/batch_queue.h"

#include <utility>

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

}  // namespace

BatchQueue::BatchQueue(std::shared_ptr<const nn::Model> model, BatchQueueOptions options) {
  check_model(model);
  auto device = model->device();
  auto make_run = options.graphs
                      ? graph_run(model, options)
                      : plain_run([model](const nn::Tensor& x) { return model->forward(x); },
                                  device);
  scheduler_ = std::make_unique<detail::Scheduler>(std::move(make_run), std::move(device),
                                                   std::move(options));
}

BatchQueue::BatchQueue(ForwardFn forward, std::shared_ptr<Device> device, BatchQueueOptions options) {
  if (!forward) throw Error(ErrorKind::kInvalidArgument, "BatchQueue: forward function is empty");
  if (options.graphs) {
    throw Error(ErrorKind::kConfig,
                "BatchQueueOptions.graphs = true needs a queue built from a model "
                "(BatchQueue(model, options)): graph batching replays the model's forward_into "
                "into fixed memory, which a forward function cannot do; set graphs = false");
  }
  scheduler_ = std::make_unique<detail::Scheduler>(plain_run(std::move(forward), device),
                                                   std::move(device), std::move(options));
}

BatchQueue::~BatchQueue() = default;  // the Scheduler's destructor stops (options.stop_mode)

std::future<nn::Tensor> BatchQueue::submit(nn::Tensor input, SubmitOptions options) {
  return detail::submit_future(*scheduler_, std::move(input), options);
}
std::future<nn::HostTensor> BatchQueue::submit(nn::HostTensor input, SubmitOptions options) {
  return detail::submit_future(*scheduler_, std::move(input), options);
}
void BatchQueue::submit_callback(nn::Tensor input,
                                 std::function<void(Result<nn::Tensor>)> callback,
                                 SubmitOptions options) {
  detail::submit_callback(*scheduler_, std::move(input), std::move(callback), options);
}
void BatchQueue::submit_callback(nn::HostTensor input,
                                 std::function<void(Result<nn::HostTensor>)> callback,
                                 SubmitOptions options) {
  detail::submit_callback(*scheduler_, std::move(input), std::move(callback), options);
}

void BatchQueue::stop(StopMode mode) { scheduler_->stop(mode); }
void BatchQueue::stop() { scheduler_->stop(scheduler_->options().stop_mode); }
BatchQueueMetrics BatchQueue::metrics() const { return scheduler_->metrics(); }
const BatchQueueOptions& BatchQueue::options() const { return scheduler_->options(); }
const std::shared_ptr<Device>& BatchQueue::device() const { return scheduler_->device(); }

}  // namespace tandem::serve
