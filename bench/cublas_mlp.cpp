// cublas_mlp.cpp — the reference MLP (512-1024-1024-512, ReLU; docs/nn.md) as plain cuBLASLt
// would run it, without tandem: the yardstick of issue 3's "batch 1024 and 4096: at least 90% of
// plain cuBLAS throughput" (docs/benchmarks.md, "CUDA (H100)").
//
// Each layer is one cublasLtMatmul with the bias (and ReLU) in its epilogue, PyTorch's weight
// layout (D = W . X^T in cuBLAS's column-major view), a 32 MiB workspace, one non-blocking
// stream, fp32 (CUBLAS_COMPUTE_32F) or TF32 (CUBLAS_COMPUTE_32F_FAST_TF32, --tf32). Two
// algorithm choices per layer:
//   heuristic: cuBLASLt's first heuristic (what straightforward code, and tandem, uses);
//   tuned:     the fastest of cuBLASLt's first 8 heuristics, timed here (a stronger baseline).
// Two timings per point, over --seconds each:
//   sync: forward + cudaStreamSynchronize per forward, one thread (what `tandem bench` does);
//   gpu:  100 forwards back to back between two events (the GPU's own rate, no host gaps).
//
// Where the buffers come from (--memory): plain (cudaMalloc, the default), pool (every buffer once
// from the device's stream-ordered pool, cudaMallocAsync, as tandem's tensors are) or
// per-forward (weights and input as pool; the activations and the output allocated and freed in
// stream order in every forward, as tandem's eager forward does). The pool keeps what is freed
// (release threshold: unlimited).
//
//   cublas_mlp [--batch 1024,4096] [--tf32] [--seconds 1] [--memory plain|pool|per-forward]
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "cublas_mlp: %s failed: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
void check(cublasStatus_t e, const char* what) {
  if (e != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cublas_mlp: %s failed: cuBLAS status %d\n", what, static_cast<int>(e));
    std::exit(1);
  }
}
#define CK(call) check((call), #call)

constexpr int kIn = 512, kHidden = 1024, kOut = 512;
constexpr std::size_t kWorkspace = 32u << 20;

struct Layer {
  int in = 0, out = 0;
  float* w = nullptr;  // out x in, row-major (PyTorch)
  float* b = nullptr;  // out
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  std::vector<cublasLtMatmulHeuristicResult_t> algos;
  int chosen = 0;
};

enum class Memory { kPlain, kPool, kPerForward };
Memory g_memory = Memory::kPlain;

// device_alloc(bytes): cudaMalloc, or (pool, per-forward) the device's pool, ready on return.
float* device_alloc(std::size_t bytes) {
  void* d = nullptr;
  if (g_memory == Memory::kPlain) {
    CK(cudaMalloc(&d, bytes));
  } else {
    CK(cudaMallocAsync(&d, bytes, nullptr));
    CK(cudaStreamSynchronize(nullptr));
  }
  return static_cast<float*>(d);
}
void device_free(void* d) {
  if (g_memory == Memory::kPlain) {
    (void)cudaFree(d);
  } else {
    (void)cudaFreeAsync(d, nullptr);
    (void)cudaStreamSynchronize(nullptr);
  }
}

float* device_random(std::size_t n, float bound, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-bound, bound);
  std::vector<float> h(n);
  for (auto& v : h) v = u(rng);
  float* d = device_alloc(n * sizeof(float));
  CK(cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  return d;
}

struct Net {
  cublasLtHandle_t lt = nullptr;
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  Layer layers[3];
  float *x = nullptr, *h1 = nullptr, *h2 = nullptr, *y = nullptr;
  int batch = 0;

  void setup(int rows, bool tf32, std::mt19937& rng) {
    batch = rows;
    const int dims[4] = {kIn, kHidden, kHidden, kOut};
    for (int i = 0; i < 3; ++i) {
      Layer& L = layers[i];
      L.in = dims[i];
      L.out = dims[i + 1];
      const float bound = 1.0f / std::sqrt(static_cast<float>(L.in));
      L.w = device_random(static_cast<std::size_t>(L.in) * L.out, bound, rng);
      L.b = device_random(static_cast<std::size_t>(L.out), bound, rng);
      L.epilogue = i < 2 ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
      const cublasComputeType_t compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      CK(cublasLtMatmulDescCreate(&L.op, compute, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      CK(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
      CK(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
      CK(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &L.epilogue,
                                        sizeof L.epilogue));
      CK(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &L.b, sizeof L.b));
      // Column-major view: D (out x rows) = op_T(W as in x out) . X (in x rows).
      CK(cublasLtMatrixLayoutCreate(&L.la, CUDA_R_32F, L.in, L.out, L.in));
      CK(cublasLtMatrixLayoutCreate(&L.lb, CUDA_R_32F, L.in, rows, L.in));
      CK(cublasLtMatrixLayoutCreate(&L.lc, CUDA_R_32F, L.out, rows, L.out));
      cublasLtMatmulPreference_t pref = nullptr;
      CK(cublasLtMatmulPreferenceCreate(&pref));
      CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                              &kWorkspace, sizeof kWorkspace));
      L.algos.resize(8);
      int found = 0;
      CK(cublasLtMatmulAlgoGetHeuristic(lt, L.op, L.la, L.lb, L.lc, L.lc, pref, 8, L.algos.data(),
                                        &found));
      CK(cublasLtMatmulPreferenceDestroy(pref));
      if (found == 0) {
        std::fprintf(stderr, "cublas_mlp: no cuBLASLt algorithm for layer %d\n", i);
        std::exit(1);
      }
      L.algos.resize(static_cast<std::size_t>(found));
    }
    x = device_random(static_cast<std::size_t>(rows) * kIn, 1.0f, rng);
    h1 = device_alloc(2 * static_cast<std::size_t>(rows) * kHidden * sizeof(float));
    h2 = h1 + static_cast<std::size_t>(rows) * kHidden;
    y = device_alloc(static_cast<std::size_t>(rows) * kOut * sizeof(float));
  }

  void run_layer(int i, int algo) { run_layer(i, algo, h1, h2, y); }
  // run_layer(i, algo, a1, a2, d): layer i from x, a1 or a2 into a1, a2 or d.
  void run_layer(int i, int algo, float* a1, float* a2, float* d) {
    Layer& L = layers[i];
    const float* in = i == 0 ? x : i == 1 ? a1 : a2;
    float* out = i == 0 ? a1 : i == 1 ? a2 : d;
    const float alpha = 1.0f, beta = 0.0f;
    CK(cublasLtMatmul(lt, L.op, &alpha, L.w, L.la, in, L.lb, &beta, out, L.lc, out, L.lc,
                      &L.algos[static_cast<std::size_t>(algo)].algo, workspace, kWorkspace, stream));
  }
  void forward() {
    if (g_memory != Memory::kPerForward) {
      for (int i = 0; i < 3; ++i) run_layer(i, layers[i].chosen);
      return;
    }
    const auto rows = static_cast<std::size_t>(batch);
    void *ws = nullptr, *out = nullptr;
    CK(cudaMallocAsync(&out, rows * kOut * sizeof(float), stream));
    CK(cudaMallocAsync(&ws, 2 * rows * kHidden * sizeof(float), stream));
    auto* a1 = static_cast<float*>(ws);
    for (int i = 0; i < 3; ++i) {
      run_layer(i, layers[i].chosen, a1, a1 + rows * kHidden, static_cast<float*>(out));
    }
    CK(cudaFreeAsync(ws, stream));
    CK(cudaFreeAsync(out, stream));
  }

  // Picks, per layer, the fastest of its heuristics (event-timed, 20 runs each).
  void tune() {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; ++i) {
      Layer& L = layers[i];
      float best = 1e30f;
      for (int k = 0; k < static_cast<int>(L.algos.size()); ++k) {
        for (int w = 0; w < 3; ++w) run_layer(i, k);
        CK(cudaEventRecord(a, stream));
        for (int r = 0; r < 20; ++r) run_layer(i, k);
        CK(cudaEventRecord(b, stream));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (ms < best) {
          best = ms;
          L.chosen = k;
        }
      }
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
  }

  double sync_rate(double seconds) {
    for (int w = 0; w < 10; ++w) forward();
    CK(cudaStreamSynchronize(stream));
    using C = std::chrono::steady_clock;
    const auto t0 = C::now();
    long long n = 0;
    while (std::chrono::duration<double>(C::now() - t0).count() < seconds) {
      forward();
      CK(cudaStreamSynchronize(stream));
      ++n;
    }
    return static_cast<double>(n) * batch / std::chrono::duration<double>(C::now() - t0).count();
  }

  double gpu_rate() {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int w = 0; w < 10; ++w) forward();
    CK(cudaEventRecord(a, stream));
    constexpr int kRuns = 100;
    for (int r = 0; r < kRuns; ++r) forward();
    CK(cudaEventRecord(b, stream));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return static_cast<double>(kRuns) * batch / (ms / 1e3);
  }

  void teardown() {
    for (auto& L : layers) {
      (void)cublasLtMatrixLayoutDestroy(L.lc);
      (void)cublasLtMatrixLayoutDestroy(L.lb);
      (void)cublasLtMatrixLayoutDestroy(L.la);
      (void)cublasLtMatmulDescDestroy(L.op);
      device_free(L.w);
      device_free(L.b);
    }
    device_free(x);
    device_free(h1);
    device_free(y);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> batches = {1024, 4096};
  bool tf32 = false;
  double seconds = 1.0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tf32") {
      tf32 = true;
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--memory" && i + 1 < argc) {
      const std::string m = argv[++i];
      if (m == "plain") {
        g_memory = Memory::kPlain;
      } else if (m == "pool") {
        g_memory = Memory::kPool;
      } else if (m == "per-forward") {
        g_memory = Memory::kPerForward;
      } else {
        std::fprintf(stderr, "cublas_mlp: --memory %s: expected plain, pool or per-forward\n",
                     m.c_str());
        return 2;
      }
    } else if (a == "--batch" && i + 1 < argc) {
      batches.clear();
      std::stringstream ss(argv[++i]);
      std::string item;
      while (std::getline(ss, item, ',')) batches.push_back(std::atoi(item.c_str()));
    } else {
      std::fprintf(stderr, "usage: cublas_mlp [--batch 1024,4096] [--tf32] [--seconds 1] "
                           "[--memory plain|pool|per-forward]\n");
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP: no CUDA device\n");
    return 77;
  }
  if (g_memory != Memory::kPlain) {  // the pool keeps freed memory, as tandem's does
    cudaMemPool_t pool = nullptr;
    CK(cudaDeviceGetDefaultMemPool(&pool, 0));
    std::uint64_t keep = ~std::uint64_t{0};
    CK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("cublas_mlp: %s, mlp 512-1024-1024-512, %s, cuBLASLt bias(+ReLU) epilogues, "
              "%.1f s per point, %s memory\n",
              prop.name, tf32 ? "TF32 (CUBLAS_COMPUTE_32F_FAST_TF32)" : "fp32", seconds,
              g_memory == Memory::kPlain  ? "cudaMalloc"
              : g_memory == Memory::kPool ? "pool"
                                          : "per-forward pool");
  std::printf("%-6s %-10s %16s %16s\n", "batch", "algorithm", "sync samples/s", "gpu samples/s");
  std::mt19937 rng(0);
  for (int batch : batches) {
    Net net;
    CK(cublasLtCreate(&net.lt));
    CK(cudaStreamCreateWithFlags(&net.stream, cudaStreamNonBlocking));
    CK(cudaMalloc(&net.workspace, kWorkspace));
    net.setup(batch, tf32, rng);
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1) net.tune();
      const double sync = net.sync_rate(seconds);
      const double gpu = net.gpu_rate();
      std::printf("%-6d %-10s %16.0f %16.0f\n", batch, pass == 0 ? "heuristic" : "tuned", sync, gpu);
      std::fflush(stdout);
    }
    net.teardown();
    (void)cudaFree(net.workspace);
    (void)cudaStreamDestroy(net.stream);
    (void)cublasLtDestroy(net.lt);
  }
  return 0;
}
