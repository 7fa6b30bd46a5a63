// config.cpp — the only place tandem reads TANDEM_* environment variables (see config.h).
#include "tandem/config.h"

#include <charconv>
#include <cstdlib>
#include <mutex>

#include "tandem/error.h"

namespace tandem {

std::string_view to_string(EncodingLockPolicy policy) noexcept {
  switch (policy) {
    case EncodingLockPolicy::kNone: return "none";
    case EncodingLockPolicy::kStream: return "stream";
    case EncodingLockPolicy::kGlobal: return "global";
  }
  return "unknown";
}

std::optional<EncodingLockPolicy> parse_encoding_lock_policy(std::string_view s) {
  if (s == "none") return EncodingLockPolicy::kNone;
  if (s == "stream") return EncodingLockPolicy::kStream;
  if (s == "global") return EncodingLockPolicy::kGlobal;
  return std::nullopt;
}

namespace {

struct VarSpec {
  const char* name;
  const char* default_value;
  const char* allowed;
};

constexpr VarSpec kVars[] = {
    {"TANDEM_BACKEND", "best available (cuda with a GPU, else cpu)",
     "cpu, agx_model, cuda, optionally with :INDEX"},
    {"TANDEM_STREAM_POOL_SIZE", "32", "2..64"},
    {"TANDEM_STREAM_POOL_WAIT_MS", "0 (fail at once when all streams are leased)",
     "-1 (wait forever) or 0..86400000"},
    {"TANDEM_ENCODING_LOCK", "the backend's (cpu: none, cuda: none, agx_model: global)",
     "none, stream, global"},
    {"TANDEM_AGX_MODEL_WINDOW_US", "0", "0..100000"},
    {"TANDEM_CUDA_GRAPHS", "1", "0, 1"},
    {"TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD", "max (the pool keeps all memory it reserved)",
     "max, or bytes 0..4611686018427387904"},
    {"TANDEM_CUDA_TF32", "0 (fp32 GEMMs in full fp32)", "0, 1 (TF32 tensor cores, ~1e-3 relative error)"},
    {"TANDEM_CUDA_PDL", "1 (batch-1 GEMV and copy kernels use programmatic dependent launch)", "0, 1"},
    {"TANDEM_CUDA_AUTOTUNE", "0 (cuBLASLt's heuristic choice)",
     "0, 1 (large GEMM shapes time cuBLASLt's first 8 algorithms once)"},
    {"TANDEM_CUDA_GRAPH_SIGNAL",
     "1 (a synchronize after a kernel-only graph replay spins on a flag the graph stores)",
     "0, 1 (0: always cudaStreamSynchronize)"},
    {"TANDEM_CUDA_FUSED_ENCODER",
     "1 (the encoder's forward at batch <= 2 as one kernel where the GPU can run it)",
     "0, 1 (0: op by op)"},
    {"TANDEM_CUDA_MMA_LINEAR",
     "1 (fp32 linears of 17..256 rows, >= 512 inputs, on the tensor cores by 3xTF32, near fp32)",
     "0, 1 (0: cuBLASLt's fp32 GEMM)"},
    {"TANDEM_CUDA_BLOCK_CACHE",
     "1 (a stream reuses up to 8 blocks freed on it for allocations of the same size)",
     "0, 1 (0: every allocation and free calls the stream-ordered pool)"},
};

const char* env(const char* name) { return std::getenv(name); }  // NOLINT(concurrency-mt-unsafe)

[[noreturn]] void bad_value(const char* name, std::string_view value) {
  for (const auto& v : kVars) {
    if (std::string_view(v.name) == name) {
      throw Error(ErrorKind::kConfig, std::string(name) + "='" + std::string(value) +
                                          "' is not valid; allowed: " + v.allowed);
    }
  }
  throw Error(ErrorKind::kInternal, std::string("unknown variable ") + name);
}

std::int64_t parse_int(const char* name, std::string_view s, std::int64_t lo, std::int64_t hi) {
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < lo || v > hi) bad_value(name, s);
  return v;
}

}  // namespace

void RuntimeConfig::validate() const {
  auto check = [](bool ok, const char* name, const std::string& value) {
    if (!ok) bad_value(name, value);
  };
  check(stream_pool_size >= 2 && stream_pool_size <= 64, "TANDEM_STREAM_POOL_SIZE",
        std::to_string(stream_pool_size));
  check(stream_pool_wait_ms >= -1 && stream_pool_wait_ms <= 86'400'000,
        "TANDEM_STREAM_POOL_WAIT_MS", std::to_string(stream_pool_wait_ms));
  check(agx_model_window_us >= 0 && agx_model_window_us <= 100'000, "TANDEM_AGX_MODEL_WINDOW_US",
        std::to_string(agx_model_window_us));
}

RuntimeConfig RuntimeConfig::from_environment() {
  RuntimeConfig c;
  if (const char* v = env("TANDEM_BACKEND")) c.backend = v;
  if (const char* v = env("TANDEM_STREAM_POOL_SIZE")) {
    c.stream_pool_size = static_cast<int>(parse_int("TANDEM_STREAM_POOL_SIZE", v, 2, 64));
  }
  if (const char* v = env("TANDEM_STREAM_POOL_WAIT_MS")) {
    c.stream_pool_wait_ms = parse_int("TANDEM_STREAM_POOL_WAIT_MS", v, -1, 86'400'000);
  }
  if (const char* v = env("TANDEM_ENCODING_LOCK")) {
    c.encoding_lock = parse_encoding_lock_policy(v);
    if (!c.encoding_lock) bad_value("TANDEM_ENCODING_LOCK", v);
  }
  if (const char* v = env("TANDEM_AGX_MODEL_WINDOW_US")) {
    c.agx_model_window_us = static_cast<int>(parse_int("TANDEM_AGX_MODEL_WINDOW_US", v, 0, 100'000));
  }
  if (const char* v = env("TANDEM_CUDA_GRAPHS")) {
    c.cuda_graphs = parse_int("TANDEM_CUDA_GRAPHS", v, 0, 1) == 1;
  }
  if (const char* v = env("TANDEM_CUDA_TF32")) {
    c.cuda_tf32 = parse_int("TANDEM_CUDA_TF32", v, 0, 1) == 1;
  }
  if (const char* v = env("TANDEM_CUDA_PDL")) {
    c.cuda_pdl = parse_int("TANDEM_CUDA_PDL", v, 0, 1) == 1;
  }
  if (const char* v = env("TANDEM_CUDA_AUTOTUNE")) {
    c.cuda_autotune = parse_int("TANDEM_CUDA_AUTOTUNE", v, 0, 1) == 1;
  }
  if (const char* v = env("TANDEM_CUDA_GRAPH_SIGNAL")) {
    c.cuda_graph_signal = parse_int("TANDEM_CUDA_GRAPH_SIGNAL", v, 0, 1) == 1;
  }
  if (const char* v = env("TANDEM_CUDA_FUSED_ENCODER")) {
    c.cuda_fused_encoder = parse_int("TANDEM_CUDA_FUSED_ENCODER", v, 0, 1) == 1;
  }
  if (const char* v = env("TANDEM_CUDA_MMA_LINEAR")) {
    c.cuda_mma_linear = parse_int("TANDEM_CUDA_MMA_LINEAR", v, 0, 1) == 1;
  }
  if (const char* v = env("TANDEM_CUDA_BLOCK_CACHE")) {
    c.cuda_block_cache = parse_int("TANDEM_CUDA_BLOCK_CACHE", v, 0, 1) == 1;
  }
  if (const char* v = env("TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD")) {
    c.cuda_mempool_release_threshold =
        std::string_view(v) == "max"
            ? UINT64_MAX
            : static_cast<std::uint64_t>(parse_int("TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD", v, 0,
                                                   std::int64_t{1} << 62));
  }
  c.validate();
  return c;
}

const RuntimeConfig& RuntimeConfig::process() {
  // Parsed once; a bad environment is reported to every caller (nothing falls back silently).
  // Leaked on purpose: threads may still read it while the process exits (Note [Device shutdown]).
  static const auto* config = new std::optional<RuntimeConfig>([]() -> std::optional<RuntimeConfig> {
    try {
      return from_environment();
    } catch (const Error&) {
      return std::nullopt;
    }
  }());
  if (!*config) (void)from_environment();  // throws the Error(kConfig) again
  return **config;
}

std::vector<EnvVarInfo> environment_variables() {
  std::vector<EnvVarInfo> out;
  for (const auto& v : kVars) {
    const char* value = env(v.name);
    out.push_back({v.name, value ? value : "", v.default_value, v.allowed});
  }
  return out;
}

}  // namespace tandem
