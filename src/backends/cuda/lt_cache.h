// lt_cache.h (private) — LtAlgoCache: cuBLASLt algorithms per matmul shape, per device;
// LtPlanCache: the descriptors and algorithm of each shape, per stream.
//
// cublasLtMatmulAlgoGetHeuristic costs tens of microseconds; a forward calls the same few shapes
// again and again. The cache maps (shape, transposes, epilogue, compute type, alignment) to the
// heuristic's first algorithm. Look-up under the mutex; on a miss the heuristic runs outside it
// and the result is inserted with try_emplace — when two threads race on one key, the first
// finisher's algorithm wins and both use it. Entries are never removed. Thread-safe.
#pragma once

#include <cublasLt.h>

#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <utility>

#include "tandem/mutex.h"

namespace tandem::backends::cuda {

struct LtKey {
  std::int64_t m = 0, n = 0, k = 0;
  int trans_a = 0, trans_b = 0;
  int epilogue = 0;
  int compute = 0;
  int alignment = 0;  // the smallest pointer alignment of A, B, C, bias (bytes, <= 256)
  [[nodiscard]] auto tie() const {
    return std::tie(m, n, k, trans_a, trans_b, epilogue, compute, alignment);
  }
  bool operator<(const LtKey& o) const { return tie() < o.tie(); }
};

class LtAlgoCache {
 public:
  [[nodiscard]] std::optional<cublasLtMatmulAlgo_t> find(const LtKey& key) const
      TANDEM_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  // insert(key, algo): the algorithm now cached for key (the first inserted wins).
  cublasLtMatmulAlgo_t insert(const LtKey& key, const cublasLtMatmulAlgo_t& algo)
      TANDEM_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return map_.try_emplace(key, algo).first->second;
  }
  [[nodiscard]] std::size_t size() const TANDEM_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return map_.size();
  }

 private:
  mutable Mutex mu_;
  std::map<LtKey, cublasLtMatmulAlgo_t> map_ TANDEM_GUARDED_BY(mu_);
};

// LtPlan: one matmul shape's cuBLASLt descriptors (operation, layouts of A, B, C) and the
// algorithm chosen for it. Owns the descriptors. Built once per stream and shape, so a linear
// call costs one attribute update (the bias pointer) and the matmul, not eight descriptor calls.
struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};

  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  LtPlan(LtPlan&& o) noexcept { swap(o); }
  LtPlan& operator=(LtPlan&& o) noexcept {
    swap(o);
    return *this;
  }
  ~LtPlan() {
    if (c) (void)cublasLtMatrixLayoutDestroy(c);
    if (b) (void)cublasLtMatrixLayoutDestroy(b);
    if (a) (void)cublasLtMatrixLayoutDestroy(a);
    if (op) (void)cublasLtMatmulDescDestroy(op);
  }
  void swap(LtPlan& o) noexcept {
    std::swap(op, o.op);
    std::swap(a, o.a);
    std::swap(b, o.b);
    std::swap(c, o.c);
    std::swap(algo, o.algo);
  }
};

// LtPlanCache: a stream's plans by shape. Not thread-safe: only the thread encoding on the
// stream uses it (like the stream's cuBLASLt handle). Entries live as long as the stream.
class LtPlanCache {
 public:
  [[nodiscard]] LtPlan* find(const LtKey& key) {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second;
  }
  LtPlan& insert(const LtKey& key, LtPlan plan) {
    return map_.insert_or_assign(key, std::move(plan)).first->second;
  }

 private:
  std::map<LtKey, LtPlan> map_;
};

}  // namespace tandem::backends::cuda
