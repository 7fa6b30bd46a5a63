// metrics.h — BatchQueueMetrics: what a BatchQueue has done, as a plain struct and as
// Prometheus text.
//
// A snapshot (BatchQueue::metrics()) is read from relaxed atomic counters without stopping the
// queue: while requests are in flight, `submitted` exceeds the sum of the outcomes by the number
// of requests still queued or running. Once the queue is stopped (and every future is ready) the
// counts add up exactly:
//     submitted == completed + rejected + timed_out + failed + cancelled.
// Each outcome counter is incremented before the request's future/callback is completed, so a
// caller that has seen its result also sees it counted.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tandem::serve {

// Quantiles of a latency distribution, in milliseconds (0 when nothing was recorded). Taken from
// a log-scale histogram with 8 buckets per octave: within about 9% of the true value.
struct LatencySummary {
  std::uint64_t count = 0;
  double sum_ms = 0.0;
  double p50_ms = 0.0;
  double p90_ms = 0.0;
  double p99_ms = 0.0;
};

struct BatchQueueMetrics {
  // Requests, by outcome (see the state table in batch_queue.h).
  std::uint64_t submitted = 0;  // every submit() call
  std::uint64_t completed = 0;  // ran, output delivered
  std::uint64_t rejected = 0;   // queue full (kQueueFull) or not runnable (kInvalidArgument)
  std::uint64_t timed_out = 0;  // deadline passed before it ran (kTimeout); never run
  std::uint64_t failed = 0;     // its batch raised an error (the model's, a kernel's)
  std::uint64_t cancelled = 0;  // stopped before it ran (kCancelled)
  // Batches run (successful or failed) and the rows (samples) and requests they carried.
  std::uint64_t batches = 0;
  std::uint64_t batch_rows = 0;
  std::uint64_t batch_requests = 0;
  std::uint64_t queued = 0;  // requests waiting now (a gauge)
  // Per request: submit -> its batch starts. Per batch: start -> outputs ready.
  LatencySummary queue_time;
  LatencySummary compute_time;
  // Where an executor's time goes besides compute, per batch: taking it (from the end of its
  // executor's previous batch: the queue's lock, the intake, waiting for work or for
  // max_queue_delay), and completing its requests after its outputs are ready (futures,
  // callbacks: the clients' wake-ups). take + compute + complete is the executor's whole cycle.
  LatencySummary take_time;
  LatencySummary complete_time;

  // avg_batch_size(): rows per batch (0 before the first batch).
  [[nodiscard]] double avg_batch_size() const {
    return batches == 0 ? 0.0 : static_cast<double>(batch_rows) / static_cast<double>(batches);
  }
  // finished(): requests with an outcome.
  [[nodiscard]] std::uint64_t finished() const {
    return completed + rejected + timed_out + failed + cancelled;
  }

  // to_prometheus(prefix): the Prometheus text exposition format (version 0.0.4), e.g.
  //   tandem_batch_requests_total{outcome="completed"} 1234
  //   tandem_batch_queue_time_seconds{quantile="0.99"} 0.0021
  // with `prefix` (default "tandem_batch") before every metric name and `labels` (e.g.
  // `queue="mlp"`, without braces; may be empty) added to every sample.
  [[nodiscard]] std::string to_prometheus(std::string_view prefix = "tandem_batch",
                                          std::string_view labels = "") const;
};

}  // namespace tandem::serve
