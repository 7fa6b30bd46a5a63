// cuda_nn_kernels.cpp — the nn kernels of CudaKernels. See Note [CUDA linear paths].
#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <cstdint>
#include <string>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_event.h"
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_launch.h"
#include "backends/cuda/cuda_stream.h"
#include "tandem/encoder.h"
#include "tandem/error.h"

namespace tandem::backends::cuda {

static_assert(static_cast<int>(Activation::kNone) == 0 && static_cast<int>(Activation::kRelu) == 1 &&
              static_cast<int>(Activation::kGelu) == 2);

namespace {

int act_code(Activation a) { return static_cast<int>(a); }

// as_int(v, what, s): v as an int for cuBLAS, or Error(kInvalidArgument).
int as_int(std::size_t v, const char* what, const CudaStream& s) {
  if (v > static_cast<std::size_t>(INT_MAX)) {
    throw Error(ErrorKind::kInvalidArgument, std::string(what) + " = " + std::to_string(v) +
                                                 " exceeds cuBLAS's int range on " + s.label());
  }
  return static_cast<int>(v);
}

int alignment_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  int align = 256;
  while (align > 4 && a % static_cast<std::uintptr_t>(align) != 0) align /= 2;
  return align;
}

cublasComputeType_t compute_type(const CudaStream& s) {
  return s.device().config().cuda_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

// Autotuning (RuntimeConfig::cuda_autotune, Note [CUDA linear paths]): GEMMs of at least
// kTuneMinMacs multiply-adds time cuBLASLt's first kTuneCandidates algorithms.
constexpr double kTuneMinMacs = 268435456.0;  // 2^28: e.g. 256 x 1024 x 1024
constexpr int kTuneCandidates = 8;
constexpr int kTuneRuns = 5;    // timed runs per candidate and pass, after one untimed run
constexpr int kTunePasses = 2;  // each candidate's time is its best over the passes
constexpr float kTuneMargin = 0.03f;  // how much faster than the current best a candidate must be

// One call's operands.
struct LtCall {
  const float* w;
  const float* x;
  float* y;
};

cublasStatus_t lt_run(CudaStream& s, const LtPlan& p, const LtCall& c,
                      const cublasLtMatmulAlgo_t& algo) {
  const float alpha = 1.0f, beta = 0.0f;
  return cublasLtMatmul(s.cublas_lt(), p.op, &alpha, c.w, p.a, c.x, p.b, &beta, c.y, p.c, c.y,
                        p.c, &algo, s.blas_workspace(), CudaStream::kBlasWorkspaceBytes, s.get());
}

// fastest(s, plan, call, candidates, n): the candidate that ran the call fastest on s's stream
// (the real operands: the caller's own run overwrites the output afterwards). The heuristic's
// first choice (candidates[0]) is replaced only by one at least kTuneMargin faster, so timing
// noise does not trade it for an equal one. Tuning usually happens on a process's first calls,
// while the GPU's clock is still ramping up from idle: timing the candidates in order once would
// favour the later ones (measured on the H100: the tuned MLP ran 13% *slower* at batch 1024
// TF32). So the heuristic's choice runs kTuneRuns times untimed first, and every candidate is
// timed in kTunePasses passes, keeping its best. Blocks until the timed runs are done (the
// stream's earlier work too). A candidate that fails to launch is skipped; if none runs, the
// first. Timing uses two events of the device's timing pool.
cublasLtMatmulAlgo_t fastest(CudaStream& s, const LtPlan& plan, const LtCall& call,
                             const cublasLtMatmulHeuristicResult_t* candidates, int n) {
  EventPool& events = s.device().events();
  cudaEvent_t start = events.acquire(true);
  cudaEvent_t stop = nullptr;
  try {
    stop = events.acquire(true);
  } catch (...) {
    events.release(start, true);
    throw;
  }
  std::array<float, kTuneCandidates> ms_of{};
  ms_of.fill(std::numeric_limits<float>::max());
  for (int r = 0; r < kTuneRuns; ++r) (void)lt_run(s, plan, call, candidates[0].algo);  // warm-up
  cudaError_t failed = cudaSuccess;
  for (int pass = 0; pass < kTunePasses && failed == cudaSuccess; ++pass) {
    for (int i = 0; i < n && i < kTuneCandidates && failed == cudaSuccess; ++i) {
      if (lt_run(s, plan, call, candidates[i].algo) != CUBLAS_STATUS_SUCCESS) continue;
      failed = cudaEventRecord(start, s.get());
      bool ran = failed == cudaSuccess;
      for (int r = 0; r < kTuneRuns && ran; ++r) {
        ran = lt_run(s, plan, call, candidates[i].algo) == CUBLAS_STATUS_SUCCESS;
      }
      if (failed == cudaSuccess) failed = cudaEventRecord(stop, s.get());
      if (failed == cudaSuccess) failed = cudaEventSynchronize(stop);
      float ms = 0.0f;
      if (failed == cudaSuccess) failed = cudaEventElapsedTime(&ms, start, stop);
      if (failed == cudaSuccess && ran) ms_of[i] = std::min(ms_of[i], ms);
    }
  }
  events.release(stop, true);
  events.release(start, true);
  check(failed, "timing cuBLASLt candidates (cudaEventRecord/Synchronize/ElapsedTime)", s.label());
  int best = 0;
  for (int i = 1; i < n && i < kTuneCandidates; ++i) {
    if (ms_of[i] < ms_of[best] * (1.0f - kTuneMargin)) best = i;
  }
  return candidates[best].algo;
}

// choose_algo(s, plan, key, call, tune): cuBLASLt's heuristic first choice for the plan's shape,
// or with `tune` the fastest of its first kTuneCandidates (timed on the call's operands);
// nullopt when cuBLASLt offers none.
std::optional<cublasLtMatmulAlgo_t> choose_algo(CudaStream& s, const LtPlan& plan,
                                                const LtKey& key, const LtCall& call, bool tune) {
  const std::string& where = s.label();
  cublasLtMatmulPreference_t pref = nullptr;
  TANDEM_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref), where);
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { (void)cublasLtMatmulPreferenceDestroy(p); }
  } guard{pref};
  const std::size_t ws = CudaStream::kBlasWorkspaceBytes;
  const auto align = static_cast<std::uint32_t>(key.alignment);
  TANDEM_CUDA_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                           sizeof ws),
      where);
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    TANDEM_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof align), where);
  }
  std::array<cublasLtMatmulHeuristicResult_t, kTuneCandidates> results{};
  int found = 0;
  TANDEM_CUDA_CHECK(cublasLtMatmulAlgoGetHeuristic(s.cublas_lt(), plan.op, plan.a, plan.b, plan.c,
                                                   plan.c, pref, tune ? kTuneCandidates : 1,
                                                   results.data(), &found),
                    where);
  if (found == 0) return std::nullopt;
  if (tune && found > 1) return fastest(s, plan, call, results.data(), found);
  return results[0].algo;
}

// lt_linear: y (rows x out) = epilogue(x (rows x in) . w^T + bias) with cuBLASLt, column-major
// view: D (out x rows, ld out) = W^T-as-stored (op T of in x out, ld in) . X (in x rows, ld in).
// Returns false when cuBLASLt offers no algorithm (the caller falls back).
bool lt_linear(CudaStream& s, float* y, const float* x, const float* w, const float* bias,
               std::size_t rows, std::size_t in, std::size_t out, cublasLtEpilogue_t epilogue) {
  const int m = as_int(out, "linear out", s), n = as_int(rows, "linear rows", s),
            k = as_int(in, "linear in", s);
  const cublasComputeType_t compute = compute_type(s);
  int align = std::min({alignment_of(y), alignment_of(x), alignment_of(w)});
  if (bias) align = std::min(align, alignment_of(bias));
  const LtKey key{m, n, k, 1, 0, static_cast<int>(epilogue), static_cast<int>(compute), align};

  const std::string& where = s.label();
  LtPlan* plan = s.lt_plans().find(key);
  LtPlan once;  // a plan not kept: a capture's untimed choice of a shape it should tune
  if (plan == nullptr) {
    LtPlan fresh;
    TANDEM_CUDA_CHECK(cublasLtMatmulDescCreate(&fresh.op, compute, CUDA_R_32F), where);
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    TANDEM_CUDA_CHECK(cublasLtMatmulDescSetAttribute(fresh.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                     sizeof ta),
                      where);
    TANDEM_CUDA_CHECK(cublasLtMatmulDescSetAttribute(fresh.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                     sizeof tb),
                      where);
    TANDEM_CUDA_CHECK(cublasLtMatmulDescSetAttribute(fresh.op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                     &epilogue, sizeof epilogue),
                      where);
    TANDEM_CUDA_CHECK(cublasLtMatrixLayoutCreate(&fresh.a, CUDA_R_32F, k, m, k), where);
    TANDEM_CUDA_CHECK(cublasLtMatrixLayoutCreate(&fresh.b, CUDA_R_32F, k, n, k), where);
    TANDEM_CUDA_CHECK(cublasLtMatrixLayoutCreate(&fresh.c, CUDA_R_32F, m, n, m), where);
    const double macs = static_cast<double>(m) * n * k;
    const bool want_tune = s.device().config().cuda_autotune && macs >= kTuneMinMacs;
    if (auto cached = s.device().lt_algos().find(key)) {
      fresh.algo = *cached;
    } else {
      if (bias) {  // the timed runs need it
        TANDEM_CUDA_CHECK(cublasLtMatmulDescSetAttribute(fresh.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                         &bias, sizeof bias),
                          where);
      }
      auto chosen = choose_algo(s, fresh, key, LtCall{w, x, y}, want_tune && !s.capturing());
      if (!chosen) return false;
      fresh.algo = *chosen;
      // A capture cannot time: its heuristic choice is not cached anywhere, so the first eager
      // call of the shape still tunes it.
      if (want_tune && s.capturing()) {
        once = std::move(fresh);
        plan = &once;
      } else {
        fresh.algo = s.device().lt_algos().insert(key, fresh.algo);  // the first finisher wins
      }
    }
    if (plan == nullptr) plan = &s.lt_plans().insert(key, std::move(fresh));
  }
  if (bias) {
    TANDEM_CUDA_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                     &bias, sizeof bias),
                      where);
  }
  TANDEM_CUDA_CHECK(lt_run(s, *plan, LtCall{w, x, y}, plan->algo), where);
  return true;
}

}  // namespace

void CudaKernels::gemm(Encoder& enc, const GemmArgs& g) const {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  CudaStream& s = stream_of(enc);
  if (g.k == 0) {
    TANDEM_CUDA_CHECK(launch::scale_matrix(s.get(), g.c, g.ldc, g.stride_c, g.m, g.n, g.batch, g.beta),
                      s.label());
    return;
  }
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  const cublasOperation_t op_b = g.trans_b == Transpose::kYes ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = g.trans_a == Transpose::kYes ? CUBLAS_OP_T : CUBLAS_OP_N;
  TANDEM_CUDA_CHECK(
      cublasGemmStridedBatchedEx(
          s.cublas(), op_b, op_a, as_int(g.n, "gemm n", s), as_int(g.m, "gemm m", s),
          as_int(g.k, "gemm k", s), &g.alpha, g.b, CUDA_R_32F, as_int(g.ldb, "gemm ldb", s),
          static_cast<long long>(g.stride_b), g.a, CUDA_R_32F, as_int(g.lda, "gemm lda", s),
          static_cast<long long>(g.stride_a), &g.beta, g.c, CUDA_R_32F,
          as_int(g.ldc, "gemm ldc", s), static_cast<long long>(g.stride_c),
          as_int(g.batch, "gemm batch", s), compute_type(s), CUBLAS_GEMM_DEFAULT),
      s.label());
}

void CudaKernels::linear(Encoder& enc, float* y, const float* x, const float* w,
                         const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                         Activation act) const {
  if (rows == 0 || out == 0) return;
  CudaStream& s = stream_of(enc);
  const std::string& where = s.label();
  if (in == 0) {
    TANDEM_CUDA_CHECK(launch::fill(s.get(), y, rows * out, 0.0f), where);
    TANDEM_CUDA_CHECK(launch::bias_act(s.get(), y, y, bias, rows, out, act_code(act)), where);
    return;
  }
  if (rows <= launch::kGemvMaxRows) {
    TANDEM_CUDA_CHECK(launch::gemv_bias_act(s.get(), y, x, w, bias, rows, in, out, act_code(act),
                                                s.device().config().cuda_pdl),
                      where);
    return;
  }
  if (rows <= launch::kRowsLinearMaxRows) {
    TANDEM_CUDA_CHECK(launch::rows_linear(s.get(), y, x, w, bias, rows, in, out, act_code(act),
                                          s.device().config().cuda_pdl),
                      where);
    return;
  }
  if (launch::cluster_linear_fits(rows, in, out, x, w)) {
    TANDEM_CUDA_CHECK(launch::cluster_linear(s.get(), y, x, w, bias, rows, in, out, act_code(act),
                                             s.device().config().cuda_pdl),
                      where);
    return;
  }
  const RuntimeConfig& config = s.device().config();
  if (config.cuda_mma_linear && !config.cuda_tf32 &&
      launch::mma_linear_fits(rows, in, out, x, w)) {
    TANDEM_CUDA_CHECK(launch::mma_linear(s.get(), y, x, w, bias, rows, in, out, act_code(act),
                                         config.cuda_pdl, s.device().multiprocessors()),
                      where);
    return;
  }
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  if (bias) {
    epilogue = act == Activation::kRelu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  } else if (act == Activation::kRelu) {
    epilogue = CUBLASLT_EPILOGUE_RELU;
  }
  if (lt_linear(s, y, x, w, bias, rows, in, out, epilogue)) {
    if (act == Activation::kGelu) {
      TANDEM_CUDA_CHECK(launch::bias_act(s.get(), y, y, nullptr, rows, out, act_code(act)), where);
    }
    return;
  }
  // Fallback: plain cuBLAS, then bias and activation in one pass.
  GemmArgs g;
  g.trans_b = Transpose::kYes;
  g.m = rows;
  g.n = out;
  g.k = in;
  g.a = x;
  g.lda = in;
  g.b = w;
  g.ldb = in;
  g.c = y;
  g.ldc = out;
  gemm(enc, g);
  if (bias || act != Activation::kNone) {
    TANDEM_CUDA_CHECK(launch::bias_act(s.get(), y, y, bias, rows, out, act_code(act)), where);
  }
}

void CudaKernels::bias_activation(Encoder& enc, float* y, const float* x, const float* bias,
                                  std::size_t rows, std::size_t cols, Activation act) const {
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(launch::bias_act(s.get(), y, x, bias, rows, cols, act_code(act)), s.label());
}

void CudaKernels::layer_norm(Encoder& enc, float* y, const float* x, const float* residual,
                             const float* gamma, const float* beta, std::size_t rows,
                             std::size_t cols, float eps) const {
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(launch::layer_norm(s.get(), y, x, residual, gamma, beta, rows, cols, eps,
                                       s.device().config().cuda_pdl),
                    s.label());
}

void CudaKernels::softmax(Encoder& enc, float* y, const float* x, std::size_t rows,
                          std::size_t cols, float scale) const {
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(launch::softmax(s.get(), y, x, rows, cols, scale), s.label());
}

void CudaKernels::transpose(Encoder& enc, float* y, const float* x, std::size_t batch,
                            std::size_t rows, std::size_t cols) const {
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(launch::transpose(s.get(), y, x, batch, rows, cols), s.label());
}

void CudaKernels::copy_2d(Encoder& enc, float* dst, std::size_t dst_ld, const float* src,
                          std::size_t src_ld, std::size_t rows, std::size_t cols) const {
  if (rows == 0 || cols == 0) return;
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_ld * sizeof(float), src, src_ld * sizeof(float),
                                      cols * sizeof(float), rows, cudaMemcpyDeviceToDevice,
                                      s.get()),
                    s.label());
}

void CudaKernels::attention(Encoder& enc, float* out, const float* qkv, float* scratch,
                            std::size_t batch, std::size_t seq, std::size_t heads,
                            std::size_t head_dim, float scale) const {
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(
      launch::attention(s.get(), out, qkv, scratch, batch, seq, heads, head_dim, scale,
                        s.device().config().cuda_pdl),
      s.label());
}

bool CudaKernels::encoder_stack(Encoder& enc, const EncoderStackArgs& a) const {
  CudaStream& s = stream_of(enc);
  if (!s.device().config().cuda_fused_encoder ||
      !launch::encoder_stack_fits(a.batch, a.seq, a.d_model, a.heads, a.feed_forward, a.n_layers,
                                  act_code(a.act))) {
    return false;
  }
  launch::EncoderStackParams p{};
  const auto aligned = [](const void* q) { return reinterpret_cast<std::uintptr_t>(q) % 16 == 0; };
  bool ok = aligned(a.x) && aligned(a.y) && aligned(a.workspace);
  const std::span<const EncoderLayerParams> layers(a.layers, a.n_layers);
  std::copy(layers.begin(), layers.end(), p.layer);
  for (const EncoderLayerParams& w : layers) {
    ok = ok && aligned(w.in_w) && aligned(w.out_w) && aligned(w.lin1_w) && aligned(w.lin2_w);
  }
  if (!ok) return false;
  p.layers = static_cast<int>(a.n_layers);
  p.batch = static_cast<int>(a.batch);
  p.seq = static_cast<int>(a.seq);
  p.act = act_code(a.act);
  p.eps = a.eps;
  p.scale = 1.0f / std::sqrt(static_cast<float>(a.d_model / a.heads));
  p.x = a.x;
  p.y = a.y;
  p.ws = a.workspace;
  TANDEM_CUDA_CHECK(launch::encoder_stack(s.get(), p, s.device().config().cuda_pdl),
                    s.label());
  return true;
}

}  // namespace tandem::backends::cuda
