// config.h — RuntimeConfig: every TANDEM_* environment variable, parsed and validated once.
//
// RuntimeConfig::from_environment() reads the variables; RuntimeConfig::process() is the
// process-wide copy, read on first use (when the first Device is created) and never re-read.
// No other part of tandem calls getenv for TANDEM_* variables. A bad value throws
// Error(kConfig) naming the variable, the value and the allowed values.
//
// | variable                      | default            | allowed                              |
// |-------------------------------|--------------------|--------------------------------------|
// | TANDEM_BACKEND                | best available     | cpu, agx_model, cuda (+ ":N")        |
// | TANDEM_STREAM_POOL_SIZE       | 32                 | 2..64                                |
// | TANDEM_STREAM_POOL_WAIT_MS    | 0 (fail at once)   | -1 (wait forever), 0..86400000       |
// | TANDEM_ENCODING_LOCK          | backend's default  | none, stream, global                 |
// | TANDEM_AGX_MODEL_WINDOW_US    | 0                  | 0..100000                            |
// | TANDEM_CUDA_GRAPHS            | 1                  | 0, 1                                 |
// | TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD | max (keep all) | max, or 0..2^62 bytes                |
// | TANDEM_CUDA_TF32              | 0                  | 0, 1 (TF32 tensor cores for fp32 GEMMs) |
// | TANDEM_CUDA_PDL               | 1                  | 0, 1 (programmatic dependent launch)  |
// | TANDEM_CUDA_BLOCK_CACHE       | 1                  | 0, 1 (streams reuse freed blocks)    |
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

// EncodingLockPolicy: what serializes encoding (recording work onto a stream).
//   kNone   — nothing; exclusive stream ownership is enough for a correct driver.
//   kStream — one mutex per stream.
//   kGlobal — one mutex for the whole process (the seed's workaround for a racy driver).
enum class EncodingLockPolicy { kNone, kStream, kGlobal };

[[nodiscard]] std::string_view to_string(EncodingLockPolicy policy) noexcept;
// parse_encoding_lock_policy("global") -> kGlobal; nullopt for anything else.
[[nodiscard]] std::optional<EncodingLockPolicy> parse_encoding_lock_policy(std::string_view s);

struct RuntimeConfig {
  std::string backend;                            // "" = best available
  int stream_pool_size = 32;                      // streams per device, stream 0 the default one
  std::int64_t stream_pool_wait_ms = 0;           // -1 = wait forever
  std::optional<EncodingLockPolicy> encoding_lock;  // nullopt = the backend's default
  int agx_model_window_us = 0;                    // widens the agx_model race window
  bool cuda_graphs = true;
  // Bytes the CUDA memory pool keeps reserved across synchronizations (cudaMemPoolAttrRelease-
  // Threshold); UINT64_MAX keeps everything (no trimming), 0 returns all free memory at each sync.
  std::uint64_t cuda_mempool_release_threshold = UINT64_MAX;
  bool cuda_tf32 = false;  // fp32 GEMMs on TF32 tensor cores (10-bit mantissa inputs): opt-in
  // Programmatic dependent launch for the batch-1 GEMV and copy kernels: each may start while the
  // previous kernel of its stream finishes, and waits for it before touching memory.
  bool cuda_pdl = true;
  // cuBLASLt autotuning: the first GEMM of a new shape with at least 2^28 multiply-adds times
  // cuBLASLt's first 8 candidate algorithms on its stream and keeps the fastest for the shape
  // (Note [CUDA linear paths]); off, or for smaller shapes, the heuristic's first choice.
  // Opt-in: each new shape stalls its stream for the timing (milliseconds), which a BatchQueue,
  // whose batch sizes vary, pays again and again (measured: p99 2.7 -> 7.4 ms, issue 4).
  bool cuda_autotune = false;
  // Graph completion signal: a stream synchronize right after a kernel-only graph replay spins
  // on a word the graph's last kernel stores into mapped host memory instead of calling
  // cudaStreamSynchronize (Note [Graph completion signal]); off: always cudaStreamSynchronize.
  bool cuda_graph_signal = true;
  // The fused encoder (Note [Fused encoder]): the reference encoder's forward at batch <= 2 as
  // one kernel, a 16-block thread-block cluster per sequence, where the GPU can schedule that
  // (Hopper); off, or elsewhere: op by op.
  bool cuda_fused_encoder = true;
  // fp32 linears of 17..256 rows with at least 512 inputs (a BatchQueue's merged batches) on the
  // tensor cores by 3xTF32, each product within 3 * 2^-20 of itself (Note [MMA linear]); off:
  // cuBLASLt's fp32 GEMM. With cuda_tf32 these GEMMs are TF32 on cuBLASLt either way.
  bool cuda_mma_linear = true;
  // Stream block caches (Note [Stream block cache]): each stream keeps up to 8 blocks freed on
  // it for its next allocations of the same size (no driver call); off: every allocation and
  // free is cudaMallocFromPoolAsync / cudaFreeAsync.
  bool cuda_block_cache = true;

  // from_environment(): parses the TANDEM_* variables; throws Error(kConfig) on a bad value.
  [[nodiscard]] static RuntimeConfig from_environment();
  // process(): from_environment() on first call (thread-safe), the same object afterwards.
  // Throws the first call's Error(kConfig) again on every call while the environment is bad.
  [[nodiscard]] static const RuntimeConfig& process();

  // validate(): throws Error(kConfig) when a field is out of range (for configs built in code).
  void validate() const;
};

// One row per variable, for `tandem info` and the README.
struct EnvVarInfo {
  std::string name;
  std::string value;          // as set in the environment, or "" when unset
  std::string default_value;  // in words
  std::string allowed;
};
[[nodiscard]] std::vector<EnvVarInfo> environment_variables();

}  // namespace tandem
