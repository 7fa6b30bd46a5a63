#include "serve/graph_batch.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <utility>

#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/graph.h"
#include "tandem/kernels.h"
#include "tandem/stream.h"

namespace tandem::serve::detail {

namespace {

// Graph keys of GraphBatchers: this tag in the top byte, then a process-unique owner number
// from bit 16, the bucket index in bits 0-11 (graph_buckets allows at most kMaxBuckets; the
// index had 8 bits, and a 257th bucket's key was another batcher's).
constexpr std::uint64_t kKeyTag = std::uint64_t{0xB9} << 56;
constexpr std::size_t kMaxBuckets = 4096;
std::atomic<std::uint64_t> next_owner{1};

}  // namespace

std::vector<std::int64_t> graph_buckets(const BatchQueueOptions& options) {
  std::vector<std::int64_t> b = options.preferred_batch_sizes;
  if (b.empty()) {
    for (std::int64_t p = 1; p < options.max_batch_size; p *= 2) b.push_back(p);
  }
  b.push_back(options.max_batch_size);
  std::sort(b.begin(), b.end());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  if (b.size() > kMaxBuckets) {
    throw Error(ErrorKind::kConfig,
                "BatchQueueOptions: graphs = true captures a graph per bucket and executor, and " +
                    std::to_string(b.size()) + " buckets (preferred_batch_sizes and " +
                    "max_batch_size) are more than the " + std::to_string(kMaxBuckets) +
                    " allowed; give fewer preferred_batch_sizes");
  }
  return b;
}

GraphBatcher::GraphBatcher(std::shared_ptr<const nn::Model> model, Stream& stream,
                           std::vector<std::int64_t> buckets)
    : model_(std::move(model)),
      stream_(stream),
      buckets_(std::move(buckets)),
      owner_(next_owner.fetch_add(1, std::memory_order_relaxed)),
      one_in_(model_->input_shape(1)),
      one_out_(model_->output_shape(1)),
      row_in_(one_in_.numel()),
      row_out_(one_out_.numel()) {
  const auto& device = model_->device();
  const auto most = static_cast<std::size_t>(buckets_.back());
  host_in_ = HostBuffer(device, most * row_in_ * sizeof(float));
  host_out_ = HostBuffer(device, most * row_out_ * sizeof(float));
  // Padding rows read whatever the staging holds: start from zeros, never from garbage.
  std::memset(host_in_.data(), 0, host_in_.size_bytes());
  dev_in_ = nn::Tensor::empty(device, model_->input_shape(most));
  dev_out_ = nn::Tensor::empty(device, model_->output_shape(most));
  try {
    for (; captured_ < buckets_.size(); ++captured_) replay(stream_, captured_);
    stream_.synchronize();
  } catch (...) {
    ++captured_;  // the bucket whose capture threw may have been cached (a failed replay)
    forget_all();
    throw;
  }
}

GraphBatcher::~GraphBatcher() { forget_all(); }

void GraphBatcher::forget_all() noexcept {
  for (std::size_t i = 0; i < std::min(captured_, buckets_.size()); ++i) {
    try {
      forget_graph(stream_, key(i));
    } catch (...) {
      // A stream error surfaced by the wait: the stream's next user sees its own work fail;
      // the graph stays cached under a key nobody uses again (freed with the device).
    }
  }
  captured_ = 0;
}

std::uint64_t GraphBatcher::key(std::size_t bucket) const {
  return kKeyTag | (owner_ << 16) | static_cast<std::uint64_t>(bucket);
}

void GraphBatcher::replay(Stream& stream, std::size_t bucket) {
  const auto rows = static_cast<std::size_t>(buckets_[bucket]);
  run_graph(stream, key(bucket), [&] {
    const Kernels& k = model_->device()->kernels();
    {
      Encoder enc(stream);
      k.copy(enc, dev_in_.data(), host_in_.data(), rows * row_in_ * sizeof(float));
      enc.commit();
    }
    model_->forward_into(dev_in_.slice(0, rows), dev_out_.slice(0, rows));
    Encoder enc(stream);
    k.copy(enc, host_out_.data(), dev_out_.data(), rows * row_out_ * sizeof(float));
    enc.commit();
  });
}

bool GraphBatcher::takes(const std::vector<RequestPtr>& batch, std::size_t& rows) const {
  rows = 0;
  for (const auto& r : batch) {
    if (!r->host || r->shape.with(0, 1) != one_in_) return false;
    rows += r->rows();
  }
  return rows >= 1 && rows <= static_cast<std::size_t>(buckets_.back());
}

void GraphBatcher::run(Stream& stream, const std::vector<RequestPtr>& batch) {
  std::size_t rows = 0;
  if (!takes(batch, rows)) {
    run_merged_batch([this](const nn::Tensor& x) { return model_->forward(x); },
                     model_->device(), stream, fallback_, batch);
    return;
  }
  // 1. Gather (the last batch's copies are done: it synchronized, or its failure did).
  float* in = host_in_.floats();
  for (const auto& r : batch) in = std::copy(r->host_in.values.begin(), r->host_in.values.end(), in);
  // 2. The smallest bucket that holds the batch; one replay; wait.
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(buckets_.begin(), buckets_.end(), static_cast<std::int64_t>(rows)) -
      buckets_.begin());
  replay(stream, bucket);
  stream.synchronize();
  // 3. Split.
  const float* out = host_out_.floats();
  for (const auto& r : batch) {
    const std::size_t n = r->rows() * row_out_;
    r->host_out.name = r->host_in.name;
    r->host_out.shape = one_out_.with(0, r->rows());
    set_host_rows(*r, out, n);
    out += n;
  }
}

}  // namespace tandem::serve::detail
