// graph_batch.h (private) — GraphBatcher: one executor's graph batching (Note [Graph batching]
// in tandem/serve/batch_queue.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "serve/batch_runner.h"
#include "serve/scheduler.h"
#include "tandem/host_buffer.h"
#include "tandem/nn/models.h"
#include "tandem/nn/tensor.h"

namespace tandem::serve::detail {

// graph_buckets(options): the bucket sizes of Note [Graph batching], ascending, without
// duplicates; Error(kConfig) when they are more than 4096. Precondition: options are valid
// (check_options).
[[nodiscard]] std::vector<std::int64_t> graph_buckets(const BatchQueueOptions& options);

class GraphBatcher {
 public:
  // GraphBatcher(model, stream, buckets): on an executor thread whose current stream on
  // model->device() is `stream` (leased for the batcher's life): allocates the staging and the
  // device buffers for buckets.back() rows and captures (and runs once, on zeros) one graph per
  // bucket. Throws what an allocation or a capture throws (Error(kOutOfMemory), ...), with every
  // graph it captured forgotten again.
  GraphBatcher(std::shared_ptr<const nn::Model> model, Stream& stream,
               std::vector<std::int64_t> buckets);
  // ~GraphBatcher(): forgets its graphs on its stream (forget_graph: waits for the stream);
  // errors are dropped (the stream reports them to its next user). On the executor thread.
  ~GraphBatcher();
  GraphBatcher(const GraphBatcher&) = delete;
  GraphBatcher& operator=(const GraphBatcher&) = delete;

  // run(stream, batch): a RunBatch (scheduler.h) on the batcher's stream. Batches of HostTensor
  // requests of the model's sample shape replay a bucket's graph; others run
  // run_merged_batch(model->forward). On a throw the caller synchronizes the stream before the
  // next batch (the executor does), so the staging is not reused while copies may read it.
  void run(Stream& stream, const std::vector<RequestPtr>& batch);

 private:
  [[nodiscard]] bool takes(const std::vector<RequestPtr>& batch, std::size_t& rows) const;
  [[nodiscard]] std::uint64_t key(std::size_t bucket) const;
  // replay(stream, bucket): run_graph of bucket `bucket` (index into buckets_).
  void replay(Stream& stream, std::size_t bucket);
  void forget_all() noexcept;

  std::shared_ptr<const nn::Model> model_;
  Stream& stream_;
  const std::vector<std::int64_t> buckets_;
  const std::uint64_t owner_;     // process-unique: its graphs' keys
  nn::Shape one_in_;              // model->input_shape(1): a request's shape with 1 row
  nn::Shape one_out_;             // model->output_shape(1)
  std::size_t row_in_ = 0, row_out_ = 0;  // floats per input / output row
  HostBuffer host_in_, host_out_;         // page-locked staging, buckets_.back() rows
  nn::Tensor dev_in_, dev_out_;           // device buffers, buckets_.back() rows
  std::size_t captured_ = 0;              // buckets captured so far (forget_all)
  Staging fallback_;                      // the plain path's staging
};

}  // namespace tandem::serve::detail
