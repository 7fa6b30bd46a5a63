// mlp_raw_sgemm.cpp — the floor for the reference MLP on the cpu backend: its three GEMMs as bare
// cblas_sgemm calls (one OpenBLAS thread, no bias, no activation, no runtime) in a loop, to
// compare with `tandem bench --model mlp --threads 1` (docs/benchmarks.md, inference (CPU)).
//   build/default/bench/mlp_raw_sgemm [BATCH] [SECONDS]
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  openblas_set_num_threads(1);
  const int b = argc > 1 ? std::atoi(argv[1]) : 256;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 3.0;
  if (b < 1 || seconds <= 0) {
    std::fprintf(stderr, "usage: mlp_raw_sgemm [BATCH >= 1] [SECONDS > 0]\n");
    return 2;
  }
  const auto n = static_cast<std::size_t>(b);
  std::vector<float> x(n * 512, 0.5f), w0(1024 * 512, 0.01f), w2(1024 * 1024, 0.01f),
      w4(512 * 1024, 0.01f), h1(n * 1024), h2(n * 1024), y(n * 512);
  auto forward = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, 1024, 512, 1, x.data(), 512,
                w0.data(), 512, 0, h1.data(), 1024);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, 1024, 1024, 1, h1.data(), 1024,
                w2.data(), 1024, 0, h2.data(), 1024);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, 512, 1024, 1, h2.data(), 1024,
                w4.data(), 1024, 0, y.data(), 512);
  };
  for (int i = 0; i < 3; ++i) forward();
  const auto t0 = std::chrono::steady_clock::now();
  long count = 0;
  double elapsed = 0;
  while ((elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()) <
         seconds) {
    forward();
    ++count;
  }
  const double rate = static_cast<double>(count) / elapsed;
  std::printf("raw sgemm x3, batch %d: %.1f forwards/s, %.0f samples/s, %.1f GFLOP/s\n", b, rate,
              rate * b, rate * b * 2.0 * 2099712 / 1e9);
  return 0;
}
