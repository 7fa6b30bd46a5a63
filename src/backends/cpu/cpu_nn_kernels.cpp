// cpu_nn_kernels.cpp — the nn kernels of CpuKernels (kernels.h): GEMMs through OpenBLAS (cblas),
// the small elementwise / row-wise kernels by hand. Each kernel is one host function dispatched
// onto the encoder's stream, so it runs on that stream's worker thread.
//
// Note [BLAS threads]
// Streams are the parallelism of tandem: every worker stream has its own thread, and many
// threads run forwards at once. OpenBLAS's own thread pool would multiply that (streams x BLAS
// threads > cores: oversubscription, and OpenBLAS threads spinning against each other), so the
// cpu backend sets OpenBLAS to one thread per call (openblas_set_num_threads(1)) once, when the
// first CpuKernels is created. Every BLAS call then runs on the calling stream's worker. This is
// a process-wide OpenBLAS setting: a program that also calls OpenBLAS itself sees it too.
//
// Note [BLAS callers]
// OpenBLAS's calls take their work buffers from a table sized by its compile-time thread limit
// (MAX_THREADS in openblas_get_config(): 64 in Debian 12's build). With many more threads inside
// OpenBLAS at once, it prints "precompiled NUM_THREADS exceeded, adding auxiliary array for thread
// metadata" and (0.3.21) corrupts its heap: `tandem bench --batching` on the cpu backend crashed
// in cblas_sgemv in 5 of 7 runs once 256 direct clients (256 threads, each running its own
// stream's forwards) called it at once (SIGSEGV, or glibc's "corrupted size vs. prev_size"); 0 of
// 6 with this gate (docs/benchmarks.md, "On the Intel Xeon VM"). So every BLAS call of the cpu
// backend holds a slot of one process-wide counting semaphore (BlasSlot) with as many slots as
// that limit; a thread beyond it waits for a slot. With one BLAS thread per call (Note [BLAS
// threads]), only machines with more cores than the limit could ever run more calls at once.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <semaphore>
#include <string_view>

#include "backends/cpu/cpu_kernels.h"
#include "tandem/encoder.h"

namespace tandem::backends {

namespace {

// blas_limit(): OpenBLAS's compile-time thread limit (MAX_THREADS=N in its configuration
// string), or 32 if the string does not say.
std::ptrdiff_t blas_limit() {
  const std::string_view config = openblas_get_config();
  constexpr std::string_view kKey = "MAX_THREADS=";
  const auto at = config.find(kKey);
  if (at == std::string_view::npos) return 32;
  const long n = std::strtol(config.data() + at + kKey.size(), nullptr, 10);
  return n >= 1 && n <= 1 << 20 ? static_cast<std::ptrdiff_t>(n) : 32;
}

// BlasSlot: holds one of blas_limit() process-wide slots for its lifetime (Note [BLAS callers]).
class BlasSlot {
 public:
  BlasSlot() { gate().acquire(); }
  ~BlasSlot() { gate().release(); }
  BlasSlot(const BlasSlot&) = delete;
  BlasSlot& operator=(const BlasSlot&) = delete;

 private:
  static std::counting_semaphore<>& gate() {
    static std::counting_semaphore<> slots(blas_limit());
    return slots;
  }
};

CBLAS_TRANSPOSE cblas_trans(Transpose t) { return t == Transpose::kYes ? CblasTrans : CblasNoTrans; }

// gelu_erf: PyTorch's exact GELU.
inline float gelu_erf(float v) { return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f)); }

// The elementwise loops are written branch-free so that the compiler vectorizes them (this file
// is built with -O3, see CMakeLists.txt; a branchy ReLU cost 18% of a batch-256 MLP forward in
// mispredictions). TANDEM_VECTOR_CLONES adds an AVX2 clone picked at load time (ifunc) where the
// compiler supports it, so the portable baseline binary still uses 8-wide vectors on AVX2 CPUs.
// Not under the sanitizers: their instrumented load-time resolver crashes (gcc defines
// __SANITIZE_*; clang 14 only answers __has_feature).
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define TANDEM_SANITIZER_BUILD 1
#endif
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__) && !defined(TANDEM_SANITIZER_BUILD)
#define TANDEM_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TANDEM_VECTOR_CLONES
#endif

// bias_relu_row / bias_row: one row; y may alias x exactly (each element read before written).
TANDEM_VECTOR_CLONES void bias_relu_row(float* y, const float* x, const float* bias,
                                        std::size_t cols) {
  if (bias) {
    for (std::size_t c = 0; c < cols; ++c) {
      const float v = x[c] + bias[c];
      y[c] = v > 0.0f ? v : 0.0f;
    }
  } else {
    for (std::size_t c = 0; c < cols; ++c) y[c] = x[c] > 0.0f ? x[c] : 0.0f;
  }
}

TANDEM_VECTOR_CLONES void bias_row(float* y, const float* x, const float* bias,
                                   std::size_t cols) {
  for (std::size_t c = 0; c < cols; ++c) y[c] = x[c] + bias[c];
}

// apply_bias_act: y[r][c] = act(x[r][c] + bias[c]) (bias may be null; y may alias x).
void apply_bias_act(float* y, const float* x, const float* bias, std::size_t rows,
                    std::size_t cols, Activation act) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    switch (act) {
      case Activation::kNone:
        if (bias) {
          bias_row(yr, xr, bias, cols);
        } else if (yr != xr) {
          std::memcpy(yr, xr, cols * sizeof(float));
        }
        break;
      case Activation::kRelu:
        bias_relu_row(yr, xr, bias, cols);
        break;
      case Activation::kGelu:
        for (std::size_t c = 0; c < cols; ++c) yr[c] = gelu_erf(xr[c] + (bias ? bias[c] : 0.0f));
        break;
    }
  }
}

void run_gemm(const GemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  for (std::size_t i = 0; i < g.batch; ++i) {
    const float* a = g.a + i * g.stride_a;
    const float* b = g.b + i * g.stride_b;
    float* c = g.c + i * g.stride_c;
    if (g.k == 0) {  // C = beta * C (BLAS would too, but some skip the beta == 0 overwrite)
      for (std::size_t r = 0; r < g.m; ++r) {
        for (std::size_t j = 0; j < g.n; ++j) {
          c[r * g.ldc + j] = g.beta == 0.0f ? 0.0f : g.beta * c[r * g.ldc + j];
        }
      }
      continue;
    }
    const BlasSlot slot;
    cblas_sgemm(CblasRowMajor, cblas_trans(g.trans_a), cblas_trans(g.trans_b),
                static_cast<blasint>(g.m), static_cast<blasint>(g.n), static_cast<blasint>(g.k),
                g.alpha, a, static_cast<blasint>(g.lda), b, static_cast<blasint>(g.ldb), g.beta, c,
                static_cast<blasint>(g.ldc));
  }
}

void run_linear(float* y, const float* x, const float* w, const float* bias, std::size_t rows,
                std::size_t in, std::size_t out, Activation act) {
  if (rows == 0 || out == 0) return;
  if (in == 0) {
    std::fill(y, y + rows * out, 0.0f);
    apply_bias_act(y, y, bias, rows, out, act);
    return;
  }
  const auto n_in = static_cast<blasint>(in);
  const auto n_out = static_cast<blasint>(out);
  const BlasSlot slot;
  if (rows == 1) {
    // Batch 1: a matrix-vector product; the bias is the initial y (beta = 1), fused for free.
    float beta = 0.0f;
    if (bias) {
      std::memcpy(y, bias, out * sizeof(float));
      beta = 1.0f;
    }
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n_out, n_in, 1.0f, w, n_in, x, 1, beta, y, 1);
    if (act != Activation::kNone) apply_bias_act(y, y, nullptr, 1, out, act);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(rows), n_out, n_in,
              1.0f, x, n_in, w, n_in, 0.0f, y, n_out);
  if (bias || act != Activation::kNone) apply_bias_act(y, y, bias, rows, out, act);
}

void run_layer_norm(float* y, const float* x, const float* residual, const float* gamma,
                    const float* beta, std::size_t rows, std::size_t cols, float eps) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const float* rr = residual ? residual + r * cols : nullptr;
    float* yr = y + r * cols;
    // Two passes over v = x + residual (in float, like PyTorch's CPU kernel up to summation
    // order), then one writing pass; in-place safe because each element is read before written.
    float sum = 0.0f;
    for (std::size_t c = 0; c < cols; ++c) sum += xr[c] + (rr ? rr[c] : 0.0f);
    const float mean = sum / static_cast<float>(cols);
    float sq = 0.0f;
    for (std::size_t c = 0; c < cols; ++c) {
      const float d = xr[c] + (rr ? rr[c] : 0.0f) - mean;
      sq += d * d;
    }
    const float inv = 1.0f / std::sqrt(sq / static_cast<float>(cols) + eps);
    for (std::size_t c = 0; c < cols; ++c) {
      const float v = (xr[c] + (rr ? rr[c] : 0.0f) - mean) * inv;
      yr[c] = v * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
    }
  }
}

void run_softmax(float* y, const float* x, std::size_t rows, std::size_t cols, float scale) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float mx = -INFINITY;
    for (std::size_t c = 0; c < cols; ++c) mx = std::max(mx, scale * xr[c]);
    float sum = 0.0f;
    for (std::size_t c = 0; c < cols; ++c) {
      const float e = std::exp(scale * xr[c] - mx);
      yr[c] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
    for (std::size_t c = 0; c < cols; ++c) yr[c] *= inv;
  }
}

void run_transpose(float* y, const float* x, std::size_t batch, std::size_t rows,
                   std::size_t cols) {
  constexpr std::size_t kTile = 32;
  for (std::size_t b = 0; b < batch; ++b) {
    const float* xb = x + b * rows * cols;
    float* yb = y + b * rows * cols;
    for (std::size_t r0 = 0; r0 < rows; r0 += kTile) {
      for (std::size_t c0 = 0; c0 < cols; c0 += kTile) {
        const std::size_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
        for (std::size_t r = r0; r < r1; ++r) {
          for (std::size_t c = c0; c < c1; ++c) yb[c * rows + r] = xb[r * cols + c];
        }
      }
    }
  }
}

void run_attention(float* out, const float* qkv, float* scratch, std::size_t batch,
                   std::size_t seq, std::size_t heads, std::size_t head_dim, float scale) {
  const std::size_t d = heads * head_dim;
  const auto ld_qkv = static_cast<blasint>(3 * d);
  const auto s = static_cast<blasint>(seq);
  const auto hd = static_cast<blasint>(head_dim);
  const BlasSlot slot;
  for (std::size_t b = 0; b < batch; ++b) {
    const float* base = qkv + b * seq * 3 * d;
    for (std::size_t h = 0; h < heads; ++h) {
      float* scores = scratch + (b * heads + h) * seq * seq;
      const float* q = base + h * head_dim;
      const float* k = base + d + h * head_dim;
      const float* v = base + 2 * d + h * head_dim;
      // scores = q . k^T (seq x seq), then softmax(scale * scores) per row, then P . v.
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s, s, hd, 1.0f, q, ld_qkv, k, ld_qkv,
                  0.0f, scores, s);
      run_softmax(scores, scores, seq, seq, scale);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s, hd, s, 1.0f, scores, s, v,
                  ld_qkv, 0.0f, out + b * seq * d + h * head_dim, static_cast<blasint>(d));
    }
  }
}

}  // namespace

CpuKernels::CpuKernels() {
  // Note [BLAS threads]: once per process.
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void CpuKernels::gemm(Encoder& enc, const GemmArgs& args) const {
  enc.dispatch([args] { run_gemm(args); });
}

void CpuKernels::linear(Encoder& enc, float* y, const float* x, const float* w,
                        const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                        Activation act) const {
  enc.dispatch([=] { run_linear(y, x, w, bias, rows, in, out, act); });
}

void CpuKernels::bias_activation(Encoder& enc, float* y, const float* x, const float* bias,
                                 std::size_t rows, std::size_t cols, Activation act) const {
  enc.dispatch([=] { apply_bias_act(y, x, bias, rows, cols, act); });
}

void CpuKernels::layer_norm(Encoder& enc, float* y, const float* x, const float* residual,
                            const float* gamma, const float* beta, std::size_t rows,
                            std::size_t cols, float eps) const {
  enc.dispatch([=] { run_layer_norm(y, x, residual, gamma, beta, rows, cols, eps); });
}

void CpuKernels::softmax(Encoder& enc, float* y, const float* x, std::size_t rows,
                         std::size_t cols, float scale) const {
  enc.dispatch([=] { run_softmax(y, x, rows, cols, scale); });
}

void CpuKernels::transpose(Encoder& enc, float* y, const float* x, std::size_t batch,
                           std::size_t rows, std::size_t cols) const {
  enc.dispatch([=] { run_transpose(y, x, batch, rows, cols); });
}

void CpuKernels::copy_2d(Encoder& enc, float* dst, std::size_t dst_ld, const float* src,
                         std::size_t src_ld, std::size_t rows, std::size_t cols) const {
  enc.dispatch([=] {
    for (std::size_t r = 0; r < rows; ++r) {
      std::memcpy(dst + r * dst_ld, src + r * src_ld, cols * sizeof(float));
    }
  });
}

void CpuKernels::attention(Encoder& enc, float* out, const float* qkv, float* scratch,
                           std::size_t batch, std::size_t seq, std::size_t heads,
                           std::size_t head_dim, float scale) const {
  enc.dispatch([=] { run_attention(out, qkv, scratch, batch, seq, heads, head_dim, scale); });
}

}  // namespace tandem::backends
