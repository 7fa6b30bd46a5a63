// Conformance: every nn kernel of the cuda backend against the cpu backend's, on fresh random
// inputs (seed printed), outputs poisoned before each run so that unwritten elements show.
// fp32 tolerance: |cuda - cpu| <= 1e-4 * (1 + |cpu|) elementwise (summation orders differ).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>

#include "gpu_test_util.h"
#include "tandem/encoder.h"
#include "tandem/graph.h"
#include "tandem/kernels.h"

namespace tandem {
namespace {

// A device and one stream of it, with upload/download helpers.
struct On {
  std::shared_ptr<Device> dev;
  Stream* s;
  explicit On(const char* name) : dev(Device::get(name)), s(&dev->current_stream()) {}
  Buffer up(const std::vector<float>& h) {
    Buffer b(dev, h.size() * sizeof(float), *s);
    upload(*s, b, h);
    return b;
  }
  Buffer poisoned(std::size_t n) {
    Buffer b(dev, n * sizeof(float), *s);
    fill(*s, b, std::nanf(""));
    return b;
  }
  std::vector<float> down(const Buffer& b) { return testing::download_all(*s, b); }
  const Kernels& k() const { return dev->kernels(); }
};

std::vector<float> rnd(std::size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_close(const std::vector<float>& cpu, const std::vector<float>& gpu, const char* what,
                  double tol = 1e-4) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_FALSE(std::isnan(gpu[i])) << what << ": element " << i << " unwritten or NaN";
    ASSERT_LE(std::fabs(static_cast<double>(gpu[i]) - cpu[i]), tol * (1.0 + std::fabs(cpu[i])))
        << what << ": element " << i << " cpu " << cpu[i] << " cuda " << gpu[i];
  }
}

class CudaNnKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    TANDEM_REQUIRE_GPU();
    seed_ = std::random_device{}();
    std::printf("seed %u\n", seed_);
  }
  // both(body): body(on) on cpu and on cuda with the same seed; returns {cpu, cuda} outputs.
  void both(const char* what, const std::function<std::vector<float>(On&, std::mt19937&)>& body,
            double tol = 1e-4) {
    On cpu("cpu"), gpu("cuda");
    std::mt19937 r1(seed_), r2(seed_);
    const auto a = body(cpu, r1);
    const auto b = body(gpu, r2);
    expect_close(a, b, what, tol);
  }
  // linear_matches_cpu: Kernels::linear on cpu and cuda for every combination of the given
  // shapes, every activation, with and (where `without_bias`) without bias; stops at the first
  // mismatch and prints its shape.
  void linear_matches_cpu(const char* what, std::initializer_list<std::size_t> rows_set,
                          std::initializer_list<std::size_t> in_set,
                          std::initializer_list<std::size_t> out_set, bool without_bias) {
    for (std::size_t rows : rows_set) {
      for (std::size_t in : in_set) {
        for (std::size_t out : out_set) {
          for (auto act : {Activation::kNone, Activation::kRelu, Activation::kGelu}) {
            for (bool with_bias : {true, false}) {
              if (!with_bias && !without_bias) continue;
              both(what, [&](On& on, std::mt19937& rng) {
                Buffer x = on.up(rnd(rows * in, rng)), w = on.up(rnd(out * in, rng));
                Buffer bias = on.up(rnd(out, rng));
                Buffer y = on.poisoned(rows * out);
                {
                  Encoder enc(*on.s);
                  on.k().linear(enc, y.as<float>(), x.as<float>(), w.as<float>(),
                                with_bias ? bias.as<float>() : nullptr, rows, in, out, act);
                }
                return on.down(y);
              });
              if (HasFatalFailure()) {
                std::printf("rows %zu in %zu out %zu act %d bias %d\n", rows, in, out,
                            static_cast<int>(act), with_bias);
                return;
              }
            }
          }
        }
      }
    }
  }
  std::uint32_t seed_ = 0;
};

TEST_F(CudaNnKernels, GemmMatchesCpuForEveryTransposeBatchStrideAndBeta) {
  for (auto ta : {Transpose::kNo, Transpose::kYes}) {
    for (auto tb : {Transpose::kNo, Transpose::kYes}) {
      for (float beta : {0.0f, 0.5f}) {
        for (std::size_t stride_zero : {0, 1}) {
          both("gemm", [&](On& on, std::mt19937& rng) {
            const std::size_t m = 37, n = 29, k = 45, batch = 3;
            GemmArgs g;
            g.trans_a = ta;
            g.trans_b = tb;
            g.m = m, g.n = n, g.k = k, g.batch = batch;
            g.alpha = 1.5f;
            g.beta = beta;
            g.lda = (ta == Transpose::kNo ? k : m) + 3;
            g.ldb = (tb == Transpose::kNo ? n : k) + 1;
            g.ldc = n + 2;
            const std::size_t sa = (ta == Transpose::kNo ? m : k) * g.lda;
            const std::size_t sb = (tb == Transpose::kNo ? k : n) * g.ldb;
            g.stride_a = sa;
            g.stride_b = stride_zero ? 0 : sb;
            g.stride_c = m * g.ldc;
            Buffer a = on.up(rnd(sa * batch, rng)), b = on.up(rnd(sb * batch, rng));
            Buffer c = on.up(rnd(g.stride_c * batch, rng));
            g.a = a.as<float>();
            g.b = b.as<float>();
            g.c = c.as<float>();
            {
              Encoder enc(*on.s);
              on.k().gemm(enc, g);
            }
            return on.down(c);
          });
        }
      }
    }
  }
}

TEST_F(CudaNnKernels, GemmWithKZeroScalesC) {
  for (float beta : {0.0f, 2.0f}) {
    both("gemm k=0", [&](On& on, std::mt19937& rng) {
      GemmArgs g;
      g.m = 5, g.n = 7, g.k = 0, g.lda = 1, g.ldb = 7, g.ldc = 7, g.beta = beta;
      Buffer a = on.up(rnd(8, rng)), b = on.up(rnd(8, rng)), c = on.up(rnd(35, rng));
      g.a = a.as<float>(), g.b = b.as<float>(), g.c = c.as<float>();
      {
        Encoder enc(*on.s);
        on.k().gemm(enc, g);
      }
      return on.down(c);
    });
  }
}

// rows 1-4: the GEMV; 5-16: the small-batch kernel (Note [Small-batch linear]), each of its
// two row templates full and partly used; 17-32: the cluster kernel (Note [Cluster linear]) where
// `in` fits it (64: one block a tile; 256: 4 splits of 64; 1024: 8 of 128; every `out` here is
// within its weight limit, 1024 x 256 exactly at it); 17-256 otherwise, `in` 1024 (a multiple
// of 32, at least 512): the 3xTF32 tensor-core kernel (Note [MMA linear]; 32-row tiles up to 96
// rows, 64-row tiles above, each full and partly used; `out` 33 and 100 end in a partial column
// tile; its split-K cases in MmaLinearSplitsMatchCpu); the rest (in 7, 64, 256, 1000; 300 and 600
// rows): cuBLASLt.
TEST_F(CudaNnKernels, LinearMatchesCpuOnEveryPath) {
  linear_matches_cpu("linear",
                     {1, 2, 3, 4, 5, 8, 9, 13, 16, 17, 20, 32, 33, 64, 96, 97, 128, 256, 300, 600},
                     {7, 64, 256, 1000, 1024}, {1, 33, 100, 256}, true);
}

// The 3xTF32 kernel's reduction split over a cluster of S blocks (Note [MMA linear]): S = 8
// (in 1024, few tiles), 4 (in 512, few tiles), and on a 132-SM GPU (H100, H200) 2 (256 rows x
// 1100 outputs: 72 tiles of 64 x 64) and 1 (2200 outputs: 140 tiles), for both tile heights, a
// partial last row tile and column tile, every activation; short enough for compute-sanitizer
// (scripts/cuda_targets.sh runs memcheck, racecheck and synccheck on it).
TEST_F(CudaNnKernels, MmaLinearSplitsMatchCpu) {
  linear_matches_cpu("mma linear", {17, 96, 97, 256}, {512, 1024}, {100, 512, 1100, 2200}, false);
}

// The cluster linear (Note [Cluster linear]: 17-32 rows, weights of at most 1 MiB) for each
// split count cluster_splits picks (in 64: 1, 256: 4, 1024: 8), a partial column tile (out 33),
// the largest weight (1024 x 256), both row counts and every activation; short enough for
// compute-sanitizer, where LinearMatchesCpuOnEveryPath is not.
TEST_F(CudaNnKernels, ClusterLinearSplitsMatchCpu) {
  linear_matches_cpu("cluster linear", {17, 32}, {64, 256, 1024}, {33, 256}, false);
}

// With TANDEM_CUDA_AUTOTUNE=1 (ctest sets it for this binary, tests/cuda/CMakeLists.txt; run
// directly without it, this test checks the heuristic path) shapes of >= 2^28 multiply-adds are
// autotuned: the
// first call times cuBLASLt's candidates on the real operands, then writes y with the winner.
// Its output, and a second call's (the cached choice), must equal the cpu's; so must a graph
// capture's first call of a new large shape (no timing inside a capture) and the eager call
// after it (which tunes).
TEST_F(CudaNnKernels, AutotunedLinearShapesMatchCpuOnFirstAndLaterCallsAndInACapture) {
  // Unusual row counts: shapes no other test of this process has cached. The capture comes
  // first, so it meets a shape that is not cached yet.
  for (std::size_t rows : {516, 520}) {
    for (bool in_graph : {true, false}) {
      both("tuned linear", [&](On& on, std::mt19937& rng) {
        const std::size_t in = 1024, out = 1024;
        Buffer x = on.up(rnd(rows * in, rng)), w = on.up(rnd(out * in, rng, -0.05f, 0.05f));
        Buffer bias = on.up(rnd(out, rng));
        std::vector<float> all;
        for (int call = 0; call < 2; ++call) {
          Buffer y = on.poisoned(rows * out);
          auto body = [&] {
            Encoder enc(*on.s);
            on.k().linear(enc, y.as<float>(), x.as<float>(), w.as<float>(), bias.as<float>(),
                          rows, in, out, Activation::kRelu);
          };
          if (in_graph && call == 0) {
            run_graph(*on.s, 0x7e57ull + rows, body);
          } else {
            body();
          }
          const auto got = on.down(y);
          all.insert(all.end(), got.begin(), got.end());
        }
        return all;
      });
      if (HasFatalFailure()) {
        std::printf("rows %zu in_graph %d\n", rows, in_graph);
        return;
      }
    }
  }
}

// layer_norm: cols <= 256 and <= 1024 take the warp-per-row kernel's two variants (17 rows: a
// block of 8 rows partly used), 3000 the block-per-row kernel.
TEST_F(CudaNnKernels, BiasActivationLayerNormAndSoftmaxMatchCpuInPlaceToo) {
  for (std::size_t cols : {1, 31, 256, 1000, 3000}) {
    const std::size_t rows = 17;
    for (auto act : {Activation::kNone, Activation::kRelu, Activation::kGelu}) {
      both("bias_activation", [&](On& on, std::mt19937& rng) {
        Buffer x = on.up(rnd(rows * cols, rng, -3, 3)), b = on.up(rnd(cols, rng));
        {
          Encoder enc(*on.s);
          on.k().bias_activation(enc, x.as<float>(), x.as<float>(), b.as<float>(), rows, cols, act);
        }
        return on.down(x);
      });
    }
    for (bool residual : {false, true}) {
      both("layer_norm", [&](On& on, std::mt19937& rng) {
        Buffer x = on.up(rnd(rows * cols, rng, -2, 5)), r = on.up(rnd(rows * cols, rng));
        Buffer g = on.up(rnd(cols, rng)), b = on.up(rnd(cols, rng));
        {
          Encoder enc(*on.s);
          on.k().layer_norm(enc, x.as<float>(), x.as<float>(), residual ? r.as<float>() : nullptr,
                            residual ? g.as<float>() : nullptr, residual ? b.as<float>() : nullptr,
                            rows, cols, 1e-5f);
        }
        return on.down(x);
      }, cols == 1 ? 1e-2 : 1e-4);  // one column: (v - mean) is rounding noise over sqrt(eps)
    }
    both("softmax", [&](On& on, std::mt19937& rng) {
      Buffer x = on.up(rnd(rows * cols, rng, -30, 30));
      Buffer y = on.poisoned(rows * cols);
      {
        Encoder enc(*on.s);
        on.k().softmax(enc, y.as<float>(), x.as<float>(), rows, cols, 0.7f);
        on.k().softmax(enc, x.as<float>(), x.as<float>(), rows, cols, 0.7f);  // in place
      }
      auto out = on.down(y);
      auto inplace = on.down(x);
      out.insert(out.end(), inplace.begin(), inplace.end());
      return out;
    });
  }
}

TEST_F(CudaNnKernels, TransposeAndCopy2dMatchCpuExactly) {
  both("transpose", [&](On& on, std::mt19937& rng) {
    const std::size_t batch = 3, rows = 45, cols = 70;
    Buffer x = on.up(rnd(batch * rows * cols, rng)), y = on.poisoned(batch * rows * cols);
    {
      Encoder enc(*on.s);
      on.k().transpose(enc, y.as<float>(), x.as<float>(), batch, rows, cols);
    }
    return on.down(y);
  }, 0.0);
  both("copy_2d", [&](On& on, std::mt19937& rng) {
    Buffer src = on.up(rnd(20 * 50, rng)), dst = on.up(std::vector<float>(20 * 40, 9.0f));
    {
      Encoder enc(*on.s);
      on.k().copy_2d(enc, dst.as<float>() + 3, 40, src.as<float>() + 1, 50, 20, 30);
    }
    return on.down(dst);
  }, 0.0);
}

TEST_F(CudaNnKernels, AttentionMatchesCpu) {
  // The fused kernel takes seq <= 128 when its shared memory fits 48 KiB (here up to seq 33 at
  // every head_dim, 128 at head_dim 8; seq 33: a partly filled key slot and query tile); the rest,
  // 129 and 200 among them, the two-kernel path. head_dim 100: not a multiple of 32.
  for (std::size_t seq : {1, 5, 32, 33, 100, 128, 129, 200}) {
    for (std::size_t head_dim : {8, 64, 100}) {
      both("attention", [&](On& on, std::mt19937& rng) {
        const std::size_t batch = 2, heads = 3, d = heads * head_dim;
        Buffer qkv = on.up(rnd(batch * seq * 3 * d, rng));
        Buffer out = on.poisoned(batch * seq * d);
        Buffer scratch = on.poisoned(batch * heads * seq * seq);
        {
          Encoder enc(*on.s);
          on.k().attention(enc, out.as<float>(), qkv.as<float>(), scratch.as<float>(), batch, seq,
                           heads, head_dim, 1.0f / std::sqrt(static_cast<float>(head_dim)));
        }
        return on.down(out);
      });
    }
  }
}

}  // namespace
}  // namespace tandem
