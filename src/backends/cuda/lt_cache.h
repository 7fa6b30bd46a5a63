// lt_cache.h (private) — LtAlgoCache: cuBLASLt algorithms per matmul shape, per device.
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

}  // namespace tandem::backends::cuda
