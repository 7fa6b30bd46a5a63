// stream.cpp — Stream, StreamPool (lock-free bitmask free list) and StreamLease.
// See Note [Stream pool] in tandem/stream.h.
#include "tandem/stream.h"

#include <bit>
#include <chrono>
#include <utility>

#include "runtime/backend.h"
#include "runtime/device_state.h"
#include "tandem/device.h"
#include "tandem/error.h"

namespace tandem {

// ---- Stream ------------------------------------------------------------------------------------

Stream::Stream(Device& device, int index, std::unique_ptr<detail::StreamImpl> impl)
    : device_(device), index_(index), impl_(std::move(impl)) {}

Stream::~Stream() = default;

void Stream::synchronize() { impl_->synchronize(); }
bool Stream::query() const { return impl_->query(); }
void* Stream::native_handle() const { return impl_->native_handle(); }

// ---- StreamPool --------------------------------------------------------------------------------

namespace {
// Bits 1..size-1 set: every worker stream free; bit 0 (the default stream) never leasable.
std::uint64_t all_workers_free(int size) {
  const std::uint64_t all = size == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << size) - 1;
  return all & ~std::uint64_t{1};
}
}  // namespace

StreamPool::StreamPool(Device& device, int size, std::int64_t wait_ms)
    : device_(device), size_(size), wait_ms_(wait_ms), free_(all_workers_free(size)),
      streams_(static_cast<std::size_t>(size)) {
  for (auto& s : streams_) s.store(nullptr, std::memory_order_relaxed);
}

StreamPool::~StreamPool() = default;

int StreamPool::leased() const {
  const std::uint64_t free = free_.load(std::memory_order_acquire);
  return (size_ - 1) - std::popcount(free);
}

Stream& StreamPool::stream(int index) {
  // Double-checked creation: the acquire load pairs with the release store below.
  Stream* s = streams_[static_cast<std::size_t>(index)].load(std::memory_order_acquire);
  if (s) return *s;
  MutexLock lock(create_mu_);
  s = streams_[static_cast<std::size_t>(index)].load(std::memory_order_relaxed);
  if (s) return *s;
  auto created = std::make_unique<Stream>(device_, index,
                                          device_.state().impl_->create_stream(index));
  s = created.get();
  owned_.push_back(std::move(created));
  streams_[static_cast<std::size_t>(index)].store(s, std::memory_order_release);
  return *s;
}

Stream& StreamPool::default_stream() { return stream(0); }

std::vector<Stream*> StreamPool::created_streams() {
  std::vector<Stream*> out;
  for (auto& s : streams_) {
    if (Stream* p = s.load(std::memory_order_acquire)) out.push_back(p);
  }
  return out;
}

int StreamPool::try_claim() {
  std::uint64_t free = free_.load(std::memory_order_acquire);
  while (free != 0) {
    const int bit = std::countr_zero(free);
    // acq_rel: acquire pairs with the release in release() (the previous owner's work on the
    // stream happens-before ours); release keeps the claim ordered for later claimers.
    if (free_.compare_exchange_weak(free, free & ~(std::uint64_t{1} << bit),
                                    std::memory_order_acq_rel, std::memory_order_acquire)) {
      return bit;
    }
  }
  return -1;
}

void StreamPool::release(int index) {
  free_.fetch_or(std::uint64_t{1} << index, std::memory_order_seq_cst);
  // seq_cst pairs with the waiter's seq_cst increment of waiters_ followed by its re-check of
  // free_: either the waiter sees the bit, or we see the waiter and notify under the mutex.
  if (waiters_.load(std::memory_order_seq_cst) > 0) {
    MutexLock lock(wait_mu_);
    wait_cv_.notify_all();
  }
}

std::optional<StreamLease> StreamPool::try_lease() {
  const int idx = try_claim();
  if (idx < 0) return std::nullopt;
  return StreamLease(this, &stream(idx));
}

StreamLease StreamPool::lease() {
  device_.state().throw_if_closed();
  int idx = try_claim();
  if (idx < 0 && wait_ms_ != 0) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms_);
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    {
      MutexLock lock(wait_mu_);
      auto claimed = [&] { return (idx = try_claim()) >= 0; };
      if (wait_ms_ < 0) {
        wait_cv_.wait(wait_mu_, claimed);
      } else {
        (void)wait_cv_.wait_until(wait_mu_, deadline, claimed);
      }
    }
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
  }
  if (idx < 0) {
    const int workers = size_ - 1;
    throw Error(ErrorKind::kPoolExhausted,
                "all " + std::to_string(workers) + " worker streams of device " + device_.name() +
                    " are leased (" + std::to_string(leased()) + " leased now" +
                    (wait_ms_ > 0 ? ", waited " + std::to_string(wait_ms_) + " ms" : "") +
                    "); set TANDEM_STREAM_POOL_WAIT_MS=-1 to wait, raise TANDEM_STREAM_POOL_SIZE "
                    "(max 64), or release leases (threads that exit return theirs)");
  }
  return StreamLease(this, &stream(idx));
}

// ---- StreamLease -------------------------------------------------------------------------------

StreamLease::StreamLease(StreamLease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)), stream_(std::exchange(other.stream_, nullptr)) {}

StreamLease& StreamLease::operator=(StreamLease&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = std::exchange(other.pool_, nullptr);
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

StreamLease::~StreamLease() { reset(); }

void StreamLease::reset() noexcept {
  if (!pool_) return;
  try {
    stream_->synchronize();
  } catch (...) {
    // The holder did not collect the error; it must not reach the next owner. Dropped here by
    // contract (see stream.h): synchronize before releasing to see it.
  }
  pool_->release(stream_->index());
  pool_ = nullptr;
  stream_ = nullptr;
}

}  // namespace tandem
