// bench_batching.cpp — `tandem bench --batching`: closed-loop clients, batch-1 requests.
//
// For each client count C (default 1, 8, 64, 256):
//   queue:  C client threads, each keeping K requests (--in-flight) in flight through one
//           BatchQueue (host tensors in and out, so clients need no stream of their own);
//   direct: the same C client threads, each calling model->forward() itself on its own stream
//           (upload, forward, download, one request at a time: in_flight 1). A device's pool
//           has at most 63 worker streams (one of which the loading thread holds), so C > 62
//           clients are spread over ceil(C/62) private devices of the same backend
//           (Device::open), each with its own copy of the model.
//           With --client callback the clients use the callback form of submit() instead of
//           futures, waiting for their oldest request as a future client does (see Slot);
//           with --client any they refill as soon as any request completes (see AnyClient),
//           the only client that really keeps K in flight (mode queue-any).
//   direct-batch: after each queue point, ONE thread calling model->forward() itself at the
//           queue's average batch size B (rounded), host input and output in page-locked
//           HostBuffers that live across calls (upload, forward, download, synchronize): the
//           best a single caller gets at that batch size, the yardstick of issue 4's
//           "queue >= 80% of one direct thread at the same average batch size".
// Reported per point: samples/s, p50/p99 latency (submit to result in hand), average batch size.
#include "bench_batching.h"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include <linux/futex.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "command.h"
#include "parse.h"
#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/host_buffer.h"
#include "tandem/kernels.h"
#include "tandem/mutex.h"
#include "tandem/nn/models.h"
#include "tandem/stream.h"
#include "tandem/serve/batch_queue.h"

namespace tandem::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Record {
  std::string device, model, mode;
  int clients = 0, in_flight = 0;
  double samples_per_s = 0, p50_ms = 0, p99_ms = 0, avg_batch = 0;
};

struct Window {
  Clock::time_point start, end;
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0.0;
  const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

nn::HostTensor random_input(const nn::Model& model, std::uint64_t seed) {
  nn::HostTensor in{"input", model.input_shape(1), {}};
  in.values.resize(in.shape.numel());
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : in.values) v = u(rng);
  return in;
}

// run_clients(C, warmup, seconds, body): C threads run body(client, window, latencies, count)
// until the window ends; each records latencies and completions inside the window only.
template <class Body>
void run_clients(int clients, double warmup_s, double seconds, std::vector<double>& latencies,
                 long long& completed, Window& window, Body body) {
  std::barrier start(clients + 1);
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> lat(static_cast<std::size_t>(clients));
  std::vector<long long> done(static_cast<std::size_t>(clients), 0);
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(clients));
  std::vector<std::thread> ts;
  for (int c = 0; c < clients; ++c) {
    ts.emplace_back([&, c] {
      start.arrive_and_wait();
      try {
        body(c, window, stop, lat[static_cast<std::size_t>(c)], done[static_cast<std::size_t>(c)]);
      } catch (...) {
        errors[static_cast<std::size_t>(c)] = std::current_exception();
        stop = true;
      }
    });
  }
  const auto t0 = Clock::now();
  window.start = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup_s));
  window.end = window.start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  start.arrive_and_wait();
  std::this_thread::sleep_until(window.end);
  stop = true;
  for (auto& t : ts) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  for (std::size_t c = 0; c < lat.size(); ++c) {
    latencies.insert(latencies.end(), lat[c].begin(), lat[c].end());
    completed += done[c];
  }
}

// NoopModel ("noop"): forward returns its input ([batch, 512]). Measures what the queue itself
// costs per request (merge, copy-out, completion), without a model behind it.
class NoopModel final : public nn::Model {
 public:
  explicit NoopModel(std::shared_ptr<Device> device) : nn::Model(std::move(device)) {}
  [[nodiscard]] std::string_view name() const override { return "noop"; }
  [[nodiscard]] nn::Shape input_shape(std::size_t batch) const override { return {batch, 512}; }
  [[nodiscard]] nn::Shape output_shape(std::size_t batch) const override { return {batch, 512}; }
  [[nodiscard]] nn::Tensor forward(const nn::Tensor& input) const override { return input; }
};

std::shared_ptr<const nn::Model> make_model(const std::string& name,
                                            const std::shared_ptr<Device>& device,
                                            const nn::ModelOptions& options) {
  if (name == "noop") return std::make_shared<NoopModel>(device);
  return nn::load_model(name, device, options);
}

bool in_window(const Window& w, Clock::time_point t) { return t >= w.start && t < w.end; }

// Usage: the process's CPU time and context switches so far (getrusage).
struct Usage {
  double cpu_s = 0;
  long voluntary = 0, involuntary = 0;
};
Usage usage_now() {
  rusage u{};
  (void)getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
  return {s(u.ru_utime) + s(u.ru_stime), u.ru_nvcsw, u.ru_nivcsw};
}

// Snapshot: the queue's metrics and the process's usage at one of the window's edges.
struct Snapshot {
  serve::BatchQueueMetrics metrics;
  Usage usage;
};
Snapshot snapshot(const serve::BatchQueue& queue) { return {queue.metrics(), usage_now()}; }

// mean_ms(a, b, s): the mean of summary `s` between snapshots a and b.
double mean_ms(const serve::LatencySummary& a, const serve::LatencySummary& b) {
  const auto n = b.count - a.count;
  return n == 0 ? 0.0 : (b.sum_ms - a.sum_ms) / static_cast<double>(n);
}

// wait_word(word, old): sleeps while `word` holds `old` (a futex wait: no spinning and no
// sched_yield rounds, unlike libstdc++'s std::atomic::wait); may return spuriously: callers
// re-check. wake_word(word): wakes every thread sleeping on `word` (one system call).
void wait_word(const std::atomic<std::uint32_t>& word, std::uint32_t old) {
  static_assert(std::atomic<std::uint32_t>::is_always_lock_free &&
                sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  (void)syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, old,
                nullptr, nullptr, 0);
}
void wake_word(const std::atomic<std::uint32_t>& word) {
  (void)syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE,
                INT32_MAX, nullptr, nullptr, 0);
}

// Slot: one in-flight request of a --client callback client. The callback (on an executor)
// stores its completion time and error, then moves `word` to kDone (acq_rel exchange: releases
// them to the client's acquire load) and wakes the client only if the client announced that it
// sleeps on this slot (kSleeping, set by the client's CAS from kPending). The client waits for its
// oldest request, as a future client does; the queue completes each client's requests of a batch
// newest first, so the client wakes at most once per batch and the callbacks cost the executor
// no system call while the client is awake. The client resets the word to kPending (relaxed: the
// slot is unshared until the next submit) before reusing the slot. The wake after the exchange
// may reach a slot the client has already reused or freed: a futex wake touches no user memory,
// and a waiter woken by it re-checks its word.
struct Slot {
  static constexpr std::uint32_t kPending = 0, kSleeping = 1, kDone = 2;
  std::atomic<std::uint32_t> word{kPending};
  Clock::time_point submitted{}, done{};  // done, error: written by the callback before `word`
  std::exception_ptr error;
};

void complete_slot(Slot& s, std::exception_ptr error) {
  s.done = Clock::now();
  s.error = std::move(error);
  if (s.word.exchange(Slot::kDone, std::memory_order_acq_rel) == Slot::kSleeping) {
    wake_word(s.word);
  }
}

void wait_slot(Slot& s) {
  for (int i = 0; i < 64; ++i) {  // a short spin first
    if (s.word.load(std::memory_order_acquire) == Slot::kDone) return;
    cpu_relax();
  }
  std::uint32_t w = Slot::kPending;
  if (!s.word.compare_exchange_strong(w, Slot::kSleeping, std::memory_order_acquire,
                                      std::memory_order_acquire) &&
      w == Slot::kDone) {
    return;
  }
  while (s.word.load(std::memory_order_acquire) == Slot::kSleeping) {
    wait_word(s.word, Slot::kSleeping);
  }
}

// callback_client(queue, input, in_flight, w, stop, lat, done): a closed-loop client keeping
// in_flight requests in flight through the callback form; returns after all of them completed.
void callback_client(serve::BatchQueue& queue, const nn::HostTensor& input, int in_flight,
                     const Window& w, const std::atomic<bool>& stop, std::vector<double>& lat,
                     long long& done) {
  const auto k = static_cast<std::size_t>(in_flight);
  std::vector<Slot> slots(k);
  std::size_t submitted = 0, consumed = 0;
  std::exception_ptr error;
  auto consume = [&] {
    Slot& s = slots[consumed % k];
    wait_slot(s);
    if (s.error) {
      if (!error) error = s.error;
    } else if (in_window(w, s.done)) {
      lat.push_back(std::chrono::duration<double, std::milli>(s.done - s.submitted).count());
      ++done;
    }
    s.error = nullptr;
    s.word.store(Slot::kPending, std::memory_order_relaxed);
    ++consumed;
  };
  while (!stop.load(std::memory_order_relaxed) && !error) {
    while (submitted - consumed < k) {
      Slot& s = slots[submitted % k];
      s.submitted = Clock::now();
      queue.submit(nn::HostTensor(input), [&s](serve::Result<nn::HostTensor> r) {
        complete_slot(s, std::move(r.error));
      });
      ++submitted;
    }
    consume();
  }
  while (consumed != submitted) consume();
  if (error) std::rethrow_exception(error);
}

// AnyClient: a --client any client's completions. Every callback stores its slot's completion
// (done, error), pushes the slot onto `completed` (a lock-free stack; seq_cst), then wakes the
// client only if it announced that it sleeps (`sleeping` 1 -> 0 by exchange: one waker makes the
// system call). The client sets `sleeping` (seq_cst), re-reads the stack and sleeps on the word
// only when the stack is still empty: either its re-read sees a push or the pusher's exchange
// sees its 1 (the seq_cst pair), so no completion is missed.
struct AnySlot {
  Clock::time_point submitted{}, done{};
  std::exception_ptr error;
  AnySlot* next = nullptr;  // in `completed`
};
struct AnyClient {
  std::atomic<AnySlot*> completed{nullptr};
  std::atomic<std::uint32_t> sleeping{0};
};

void complete_any(AnyClient& c, AnySlot& s, std::exception_ptr error) {
  s.done = Clock::now();
  s.error = std::move(error);
  AnySlot* head = c.completed.load(std::memory_order_relaxed);
  do {
    s.next = head;
  } while (!c.completed.compare_exchange_weak(head, &s, std::memory_order_seq_cst,
                                              std::memory_order_relaxed));
  if (c.sleeping.exchange(0, std::memory_order_seq_cst) == 1) wake_word(c.sleeping);
}

// take_completed(c): the slots completed since the last call; sleeps until there is one.
AnySlot* take_completed(AnyClient& c) {
  for (;;) {
    if (AnySlot* s = c.completed.exchange(nullptr, std::memory_order_seq_cst)) return s;
    c.sleeping.store(1, std::memory_order_seq_cst);
    if (AnySlot* s = c.completed.exchange(nullptr, std::memory_order_seq_cst)) {
      c.sleeping.store(0, std::memory_order_relaxed);
      return s;
    }
    wait_word(c.sleeping, 1);  // returns at once when a completion already cleared it
  }
}

// any_client(...): a closed-loop client that keeps in_flight requests in flight through the
// callback form, refilling as soon as any of them completes (a future client can only wait for
// one future: it waits for its oldest, while its later requests may be done already).
void any_client(serve::BatchQueue& queue, const nn::HostTensor& input, int in_flight,
                const Window& w, const std::atomic<bool>& stop, std::vector<double>& lat,
                long long& done) {
  AnyClient client;
  std::vector<AnySlot> slots(static_cast<std::size_t>(in_flight));
  std::vector<AnySlot*> free;
  for (auto& s : slots) free.push_back(&s);
  std::exception_ptr error;
  auto submit = [&] {
    AnySlot* s = free.back();
    free.pop_back();
    s->submitted = Clock::now();
    queue.submit(nn::HostTensor(input), [&client, s](serve::Result<nn::HostTensor> r) {
      complete_any(client, *s, std::move(r.error));
    });
  };
  auto consume = [&] {
    for (AnySlot* s = take_completed(client); s != nullptr;) {
      AnySlot* next = s->next;
      if (s->error) {
        if (!error) error = s->error;
      } else if (in_window(w, s->done)) {
        lat.push_back(std::chrono::duration<double, std::milli>(s->done - s->submitted).count());
        ++done;
      }
      s->error = nullptr;
      free.push_back(s);
      s = next;
    }
  };
  while (!stop.load(std::memory_order_relaxed) && !error) {
    while (!free.empty()) submit();
    consume();
  }
  while (free.size() != slots.size()) consume();
  if (error) std::rethrow_exception(error);
}

Record measure_queue(const std::shared_ptr<const nn::Model>& model, int clients, int in_flight,
                     const serve::BatchQueueOptions& options, double warmup_s, double seconds,
                     const std::string& client_kind) {
  const bool callbacks = client_kind != "future";
  serve::BatchQueue queue(model, options);
  std::vector<double> latencies;
  long long completed = 0;
  Window window;
  Snapshot at_start, at_end;
  std::atomic<bool> started{false}, ended{false};
  run_clients(clients, warmup_s, seconds, latencies, completed, window,
              [&](int c, const Window& w, std::atomic<bool>& stop, std::vector<double>& lat,
                  long long& done) {
                const nn::HostTensor input = random_input(*model, static_cast<std::uint64_t>(c) + 1);
                // Batch statistics over the window: one client samples the metrics at its edges
                // (a thread of its own for callback clients, which block in a wait).
                if (callbacks) {
                  std::thread sampler;
                  if (c == 0) {
                    sampler = std::thread([&] {
                      std::this_thread::sleep_until(w.start);
                      at_start = snapshot(queue);
                      started = true;
                      std::this_thread::sleep_until(w.end);
                      at_end = snapshot(queue);
                      ended = true;
                    });
                  }
                  try {
                    if (client_kind == "any") {
                      any_client(queue, input, in_flight, w, stop, lat, done);
                    } else {
                      callback_client(queue, input, in_flight, w, stop, lat, done);
                    }
                  } catch (...) {
                    if (sampler.joinable()) sampler.join();
                    throw;
                  }
                  if (sampler.joinable()) sampler.join();
                  return;
                }
                std::deque<std::pair<Clock::time_point, std::future<nn::HostTensor>>> pending;
                while (!stop.load(std::memory_order_relaxed)) {
                  while (static_cast<int>(pending.size()) < in_flight) {
                    pending.emplace_back(Clock::now(), queue.submit(input));
                  }
                  (void)pending.front().second.get();  // rethrows a failed request
                  const Clock::time_point submitted_at = pending.front().first;
                  pending.pop_front();
                  const auto now = Clock::now();
                  if (in_window(w, now)) {
                    lat.push_back(std::chrono::duration<double, std::milli>(now - submitted_at).count());
                    ++done;
                  }
                  // Batch statistics over the window: one client samples the metrics at its edges.
                  if (c == 0 && !started && now >= w.start) {
                    at_start = snapshot(queue);
                    started = true;
                  }
                  if (c == 0 && !ended && now >= w.end) {
                    at_end = snapshot(queue);
                    ended = true;
                  }
                }
                for (auto& p : pending) (void)p.second.get();
              });
  if (!ended) at_end = snapshot(queue);
  queue.stop();
  {
    // Where an executor's time goes (to stderr, so the table stays as it was): each executor has
    // instances x seconds / batches of wall time per batch: taking the batch (lock, intake,
    // waiting for work), running it (`run`: gather, forward, copies, synchronize, split), and
    // completing its requests (the clients' wake-ups); means over the window. And what the whole
    // process used in the window: CPU cores, CPU time and context switches per request.
    const auto& a = at_start.metrics;
    const auto& b = at_end.metrics;
    const double batches = static_cast<double>(b.batches - a.batches);
    const double requests = static_cast<double>(b.completed - a.completed);
    const double cpu = at_end.usage.cpu_s - at_start.usage.cpu_s;
    if (batches > 0 && requests > 0) {
      std::fprintf(stderr,
                   "  [queue %d clients] %.0f batches/s; per executor %.1f us per batch: take "
                   "%.1f, run %.1f (p50/p99 %.1f/%.1f), complete %.1f us (means); queue time "
                   "p50/p99 %.3f/%.3f ms; process: %.1f cores, %.2f us CPU and %.3f/%.3f "
                   "voluntary/involuntary context switches per request\n",
                   clients, batches / seconds, options.instances * seconds * 1e6 / batches,
                   1e3 * mean_ms(a.take_time, b.take_time),
                   1e3 * mean_ms(a.compute_time, b.compute_time), b.compute_time.p50_ms * 1e3,
                   b.compute_time.p99_ms * 1e3, 1e3 * mean_ms(a.complete_time, b.complete_time),
                   b.queue_time.p50_ms, b.queue_time.p99_ms, cpu / seconds, 1e6 * cpu / requests,
                   static_cast<double>(at_end.usage.voluntary - at_start.usage.voluntary) / requests,
                   static_cast<double>(at_end.usage.involuntary - at_start.usage.involuntary) /
                       requests);
    }
  }
  Record r;
  r.mode = client_kind == "any" ? "queue-any" : callbacks ? "queue-cb" : "queue";
  r.clients = clients;
  r.in_flight = in_flight;
  r.samples_per_s = static_cast<double>(completed) / seconds;
  r.p50_ms = percentile(latencies, 0.50);
  r.p99_ms = percentile(latencies, 0.99);
  const double batches = static_cast<double>(at_end.metrics.batches - at_start.metrics.batches);
  r.avg_batch = batches > 0 ? static_cast<double>(at_end.metrics.batch_rows -
                                                  at_start.metrics.batch_rows) / batches
                            : 0;
  return r;
}

Record measure_direct(const std::string& model_name, const std::shared_ptr<Device>& base,
                      const nn::ModelOptions& model_options, int clients, double warmup_s,
                      double seconds) {
  // One private device (and model copy) per 62 clients: each client thread holds a stream, and
  // this thread holds one on each device (it loaded the model there).
  RuntimeConfig config = base->config();
  config.stream_pool_size = 64;
  const int per_device = config.stream_pool_size - 2;
  const int devices = (clients + per_device - 1) / per_device;
  std::vector<std::shared_ptr<const nn::Model>> models;
  for (int d = 0; d < devices; ++d) {
    auto device = Device::open(base->name(), config);
    models.push_back(make_model(model_name, device, model_options));
    (void)device->current_stream();  // as load_model does: this thread holds one stream
  }
  std::vector<double> latencies;
  long long completed = 0;
  Window window;
  run_clients(clients, warmup_s, seconds, latencies, completed, window,
              [&](int c, const Window& w, std::atomic<bool>& stop, std::vector<double>& lat,
                  long long& done) {
                const auto& model = models[static_cast<std::size_t>(c / per_device)];
                const nn::HostTensor input = random_input(*model, static_cast<std::uint64_t>(c) + 1);
                std::vector<float> out(model->output_shape(1).numel());
                while (!stop.load(std::memory_order_relaxed)) {
                  const auto t0 = Clock::now();
                  const nn::Tensor x = nn::Tensor::from_host(model->device(), input.shape, input.values);
                  model->forward(x).to_host(out);
                  const auto now = Clock::now();
                  if (in_window(w, now)) {
                    lat.push_back(std::chrono::duration<double, std::milli>(now - t0).count());
                    ++done;
                  }
                }
              });
  for (auto& m : models) m->device()->close();
  Record r;
  r.mode = "direct";
  r.clients = clients;
  r.in_flight = 1;
  r.samples_per_s = static_cast<double>(completed) / seconds;
  r.p50_ms = percentile(latencies, 0.50);
  r.p99_ms = percentile(latencies, 0.99);
  r.avg_batch = 1.0;
  return r;
}

Record measure_direct_batch(const std::shared_ptr<const nn::Model>& model, std::size_t batch,
                            double warmup_s, double seconds) {
  const auto& device = model->device();
  Stream& stream = device->current_stream();
  const Kernels& k = device->kernels();
  const nn::Shape in_shape = model->input_shape(batch);
  const std::size_t out_floats = model->output_shape(batch).numel();
  HostBuffer in(device, in_shape.numel() * sizeof(float));
  HostBuffer out(device, out_floats * sizeof(float));
  {
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (std::size_t i = 0; i < in_shape.numel(); ++i) in.floats()[i] = u(rng);
  }
  const nn::Tensor x = nn::Tensor::empty(device, in_shape);
  std::vector<double> latencies;
  long long completed = 0;
  const auto t0 = Clock::now();
  const Window w{t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup_s)),
                 t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup_s + seconds))};
  for (;;) {
    const auto start = Clock::now();
    if (start >= w.end) break;
    {
      Encoder enc(stream);
      k.copy_from_host(enc, x.data(), in.data(), in.size_bytes());
      enc.commit();
    }
    const nn::Tensor y = model->forward(x);
    {
      Encoder enc(stream);
      k.copy_to_host(enc, out.data(), y.data(), out_floats * sizeof(float));
      enc.commit();
    }
    stream.synchronize();
    const auto now = Clock::now();
    if (in_window(w, start)) {
      latencies.push_back(std::chrono::duration<double, std::milli>(now - start).count());
      completed += static_cast<long long>(batch);
    }
  }
  Record r;
  r.mode = "direct-batch";
  r.clients = 1;
  r.in_flight = 1;
  r.samples_per_s = static_cast<double>(completed) / seconds;
  r.p50_ms = percentile(latencies, 0.50);
  r.p99_ms = percentile(latencies, 0.99);
  r.avg_batch = static_cast<double>(batch);
  return r;
}

std::vector<int> parse_list(const std::string& s, const char* what, int lo, int hi) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t pos = 0;
    int v = 0;
    try {
      v = std::stoi(item, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos != item.size() || item.empty() || v < lo || v > hi) {
      throw Error(ErrorKind::kInvalidArgument, std::string(what) + ": '" + item +
                                                   "' is not a number in " + std::to_string(lo) +
                                                   ".." + std::to_string(hi));
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace

int run_batching_bench(const std::vector<std::string>& args) {
  CLI::App app{"Dynamic batching against direct calls: C closed-loop clients, each keeping K "
               "batch-1 requests in flight through a BatchQueue (mode queue), next to the same "
               "clients calling the model's forward themselves (mode direct)."};
  std::string device_name, model_name = "mlp", clients_list = "1,8,64,256",
              modes_list = "direct,queue,direct-batch",
              json_path;
  int in_flight = 16, instances = 2, shards = 1, max_batch = 256, preferred_step = 0;
  long delay_us = 0;
  double seconds = 2.0, warmup = 0.3;
  std::uint64_t seed = 0;
  bool batching = true;
  std::string client_kind = "future";
  bool graphs = false;
  app.add_flag("--batching", batching, "this benchmark (dynamic batching)");
  app.add_option("--device", device_name, "device (default: TANDEM_BACKEND or best available)");
  app.add_option("--model", model_name,
                 "mlp | encoder | noop (forward returns its input: the queue's own cost)")
      ->capture_default_str()->check(CLI::IsMember({"mlp", "encoder", "noop"}));
  app.add_option("--seed", seed, "seed of the model's random weights")->capture_default_str();
  app.add_option("--clients", clients_list, "comma-separated client counts, each 1..4096")
      ->capture_default_str();
  app.add_option("--in-flight", in_flight, "requests each queue client keeps in flight (K)")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--modes", modes_list,
                 "comma-separated: direct, queue, direct-batch (one thread at the queue's "
                 "average batch size; needs queue)")
      ->capture_default_str();
  app.add_option("--instances", instances, "queue executor threads (each with its own stream)")
      ->capture_default_str()->check(CLI::Range(1, 30));
  app.add_option("--shards", shards,
                 "queue shards (BatchQueueOptions::shards, 1..instances): independent queues "
                 "the clients and executors are split over")
      ->capture_default_str()->check(CLI::Range(1, 30));
  app.add_option("--max-batch", max_batch, "queue max_batch_size")->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--preferred-step", preferred_step,
                 "queue preferred_batch_sizes: every multiple of this step up to --max-batch "
                 "(with --graphs also the buckets, so batches are not padded beyond the step); "
                 "0: none (aim for --max-batch; graph buckets are powers of two)")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  app.add_option("--delay-us", delay_us, "queue max_queue_delay in microseconds")
      ->capture_default_str()->check(CLI::Range(0L, 10'000'000L));
  app.add_option("--seconds", seconds, "measured time per point")->capture_default_str()
      ->check(CLI::Range(0.05, 600.0));
  app.add_option("--warmup", warmup, "warm-up time per point (not measured)")->capture_default_str()
      ->check(CLI::Range(0.0, 60.0));
  app.add_option("--client", client_kind,
                 "queue clients: future (wait for the oldest future), callback (the callback form, "
                 "waiting for the oldest request), any (the callback form, refilling as soon as "
                 "any request completes)")
      ->capture_default_str()->check(CLI::IsMember({"future", "callback", "any"}));
  app.add_flag("--graphs", graphs,
               "queue: graph batching (BatchQueueOptions::graphs: each batch a graph replay, "
               "padded up to a power of two or --max-batch; mlp, encoder, noop)");
  app.add_option("--json", json_path, "also write the records to this JSON file");
  if (auto code = parse(app, args)) return *code;
  if (shards > instances) {
    std::fprintf(stderr, "%s: --shards %d exceeds --instances %d: each shard needs an executor\n",
                 args[0].c_str(), shards, instances);
    return kExitUsage;
  }

  std::vector<int> clients;
  bool run_direct = false, run_queue = false, run_direct_batch = false;
  std::shared_ptr<Device> device;
  try {
    clients = parse_list(clients_list, "--clients", 1, 4096);
    std::stringstream ss(modes_list);
    std::string m;
    while (std::getline(ss, m, ',')) {
      if (m == "direct") {
        run_direct = true;
      } else if (m == "queue") {
        run_queue = true;
      } else if (m == "direct-batch") {
        run_direct_batch = true;
      } else {
        throw Error(ErrorKind::kInvalidArgument,
                    "--modes: '" + m + "' is not one of: direct, queue, direct-batch");
      }
    }
    device = device_name.empty() ? Device::get_default() : Device::get(device_name);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", args[0].c_str(), e.what());
    return kExitUsage;
  }

  std::vector<Record> records;
  try {
    nn::ModelOptions model_options;
    model_options.seed = seed;
    auto model = make_model(model_name, device, model_options);
    serve::BatchQueueOptions options;
    options.max_batch_size = max_batch;
    options.max_queue_delay = std::chrono::microseconds(delay_us);
    options.instances = instances;
    options.shards = shards;
    if (preferred_step > 0) {
      for (int b = preferred_step; b <= max_batch; b += preferred_step) {
        options.preferred_batch_sizes.push_back(b);
      }
      if (options.preferred_batch_sizes.empty() ||
          options.preferred_batch_sizes.back() != max_batch) {
        options.preferred_batch_sizes.push_back(max_batch);
      }
    }
    options.max_queue_size = 1 << 20;
    options.graphs = graphs;
    std::printf("tandem bench --batching: %s, model %s, batch-1 requests, %.2f s per point "
                "(after %.2f s warm-up)\n  queue: %d in flight per client, max_batch_size %d, "
                "max_queue_delay %ld us, %d instance(s) in %d shard(s), graphs %s, %s clients; "
                "direct: 1 in flight per client\n",
                device->name().c_str(), model_name.c_str(), seconds, warmup, in_flight, max_batch,
                delay_us, instances, shards, graphs ? "on" : "off", client_kind.c_str());
    std::printf("%-12s %8s %10s %14s %10s %10s %10s\n", "mode", "clients", "in_flight",
                "samples/s", "p50_ms", "p99_ms", "avg_batch");
    for (int c : clients) {
      for (int pass = 0; pass < 2; ++pass) {
        const bool direct = pass == 0;
        if (direct ? !run_direct : !run_queue) continue;
        Record r = direct ? measure_direct(model_name, device, model_options, c, warmup, seconds)
                          : measure_queue(model, c, in_flight, options, warmup, seconds,
                                          client_kind);
        r.device = device->name();
        r.model = model_name;
        std::printf("%-12s %8d %10d %14.0f %10.3f %10.3f %10.2f\n", r.mode.c_str(), r.clients,
                    r.in_flight, r.samples_per_s, r.p50_ms, r.p99_ms, r.avg_batch);
        std::fflush(stdout);
        records.push_back(r);
      }
      if (run_direct && run_queue) {
        const auto& d = records[records.size() - 2];
        const auto& q = records.back();
        std::printf("        queue / direct at %d clients: %.2fx samples/s\n", c,
                    d.samples_per_s > 0 ? q.samples_per_s / d.samples_per_s : 0.0);
      }
      if (run_queue && run_direct_batch && records.back().avg_batch >= 0.5) {
        const Record q = records.back();
        const auto b = static_cast<std::size_t>(std::lround(q.avg_batch));
        Record r = measure_direct_batch(model, b, warmup, seconds);
        r.device = device->name();
        r.model = model_name;
        std::printf("%-12s %8d %10d %14.0f %10.3f %10.3f %10.2f\n", r.mode.c_str(), r.clients,
                    r.in_flight, r.samples_per_s, r.p50_ms, r.p99_ms, r.avg_batch);
        std::printf("        queue / one direct thread at batch %zu: %.0f%% samples/s\n", b,
                    r.samples_per_s > 0 ? 100.0 * q.samples_per_s / r.samples_per_s : 0.0);
        std::fflush(stdout);
        records.push_back(r);
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s error: %s\n", args[0].c_str(),
                 std::string(to_string(e.kind())).c_str(), e.what());
    return kExitFailure;
  }
  if (!json_path.empty()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : records) {
      out.push_back({{"device", r.device}, {"model", r.model}, {"mode", r.mode},
                     {"clients", r.clients}, {"in_flight", r.in_flight},
                     {"samples_per_s", r.samples_per_s}, {"p50_ms", r.p50_ms},
                     {"p99_ms", r.p99_ms}, {"avg_batch", r.avg_batch}});
    }
    std::ofstream f(json_path);
    f << out.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "%s: cannot write %s\n", args[0].c_str(), json_path.c_str());
      return kExitFailure;
    }
  }
  return kExitOk;
}

}  // namespace tandem::cli
