// Op-level tests of the nn layer (and so of the cpu backend's nn kernels) against naive
// double-precision references, with odd sizes (1, 3, 17, 1000) and batch 1.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/kernels.h"
#include "tandem/nn/ops.h"
#include "tandem/stream.h"

namespace tandem::nn {
namespace {

std::shared_ptr<Device> cpu() { return Device::get("cpu"); }

std::vector<float> random_vector(std::size_t n, std::uint32_t seed, float lo = -1.0f,
                                 float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

Tensor make(const Shape& shape, std::uint32_t seed) {
  return Tensor::from_host(cpu(), shape, random_vector(shape.numel(), seed));
}

// Checks |got - want| <= atol + rtol * scale element by element, printing the first miss.
void expect_near(const std::vector<float>& got, const std::vector<double>& want,
                 const std::vector<double>& scale, double rtol, double atol,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double tol = atol + rtol * (scale.empty() ? std::abs(want[i]) : scale[i]);
    ASSERT_LE(std::abs(got[i] - want[i]), tol)
        << what << ": element " << i << " is " << got[i] << ", expected " << want[i];
  }
}

// Reference linear: y = act(x w^T + b); also returns sum |x_k w_k| per output for the tolerance.
void ref_linear(const std::vector<float>& x, const std::vector<float>& w,
                const std::vector<float>* b, std::size_t rows, std::size_t in, std::size_t out,
                Activation act, std::vector<double>& y, std::vector<double>& mag) {
  y.assign(rows * out, 0.0);
  mag.assign(rows * out, 0.0);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t o = 0; o < out; ++o) {
      double s = b ? (*b)[o] : 0.0, m = b ? std::abs((*b)[o]) : 0.0;
      for (std::size_t i = 0; i < in; ++i) {
        s += static_cast<double>(x[r * in + i]) * w[o * in + i];
        m += std::abs(static_cast<double>(x[r * in + i]) * w[o * in + i]);
      }
      if (act == Activation::kRelu) s = std::max(s, 0.0);
      if (act == Activation::kGelu) s = 0.5 * s * (1.0 + std::erf(s / std::sqrt(2.0)));
      y[r * out + o] = s;
      mag[r * out + o] = m;
    }
  }
}

struct LinearCase {
  std::size_t rows, in, out;
};

class LinearOp : public ::testing::TestWithParam<LinearCase> {};

TEST_P(LinearOp, MatchesTheNaiveReferenceWithEveryActivation) {
  const auto [rows, in, out] = GetParam();
  const auto xv = random_vector(rows * in, 1), wv = random_vector(out * in, 2),
             bv = random_vector(out, 3);
  const Tensor x = Tensor::from_host(cpu(), Shape{rows, in}, xv);
  const Tensor w = Tensor::from_host(cpu(), Shape{out, in}, wv);
  const Tensor b = Tensor::from_host(cpu(), Shape{out}, bv);
  for (Activation act : {Activation::kNone, Activation::kRelu, Activation::kGelu}) {
    for (bool with_bias : {true, false}) {
      std::vector<double> want, mag;
      ref_linear(xv, wv, with_bias ? &bv : nullptr, rows, in, out, act, want, mag);
      const Tensor y = linear(x, w, with_bias ? b : Tensor(), act);
      ASSERT_EQ(y.shape(), (Shape{rows, out}));
      expect_near(y.to_host(), want, mag, 1e-5, 1e-6,
                  "linear " + std::to_string(rows) + "x" + std::to_string(in) + "->" +
                      std::to_string(out) + " act " + std::to_string(static_cast<int>(act)) +
                      (with_bias ? " bias" : " no bias"));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(OddSizes, LinearOp,
                         ::testing::Values(LinearCase{1, 1, 1}, LinearCase{1, 3, 17},
                                           LinearCase{1, 1000, 17}, LinearCase{1, 17, 1000},
                                           LinearCase{3, 17, 1}, LinearCase{17, 3, 1000},
                                           LinearCase{17, 1000, 3}, LinearCase{1000, 17, 3},
                                           LinearCase{3, 1000, 1000}));

TEST(LinearOp, AcceptsLeadingBatchDimensions) {
  const Tensor x = make(Shape{2, 3, 17}, 4);
  const Tensor w = make(Shape{5, 17}, 5);
  const Tensor y = linear(x, w, Tensor());
  EXPECT_EQ(y.shape(), (Shape{2, 3, 5}));
}

TEST(LinearOp, RejectsMismatchedShapesNamingThem) {
  const Tensor x = make(Shape{2, 16}, 4);
  const Tensor w = make(Shape{5, 17}, 5);
  try {
    (void)linear(x, w, Tensor());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("[2, 16]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[5, 17]"), std::string::npos) << e.what();
  }
}

TEST(Activations, ReluAndGeluMatchTheirDefinitions) {
  for (std::size_t n : {1u, 3u, 17u, 1000u}) {
    const auto xv = random_vector(n, 7, -6.0f, 6.0f);
    const Tensor x = Tensor::from_host(cpu(), Shape{n}, xv);
    std::vector<double> r(n), g(n);
    for (std::size_t i = 0; i < n; ++i) {
      r[i] = std::max<double>(xv[i], 0.0);
      g[i] = 0.5 * xv[i] * (1.0 + std::erf(xv[i] / std::sqrt(2.0)));
    }
    expect_near(relu(x).to_host(), r, {}, 0.0, 0.0, "relu n=" + std::to_string(n));
    expect_near(gelu(x).to_host(), g, {}, 1e-6, 1e-6, "gelu n=" + std::to_string(n));
  }
}

std::vector<double> ref_layer_norm(const std::vector<float>& x, const std::vector<float>* res,
                                   const std::vector<float>* g, const std::vector<float>* b,
                                   std::size_t rows, std::size_t cols, double eps) {
  std::vector<double> y(rows * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    auto v = [&](std::size_t c) {
      return static_cast<double>(x[r * cols + c]) + (res ? (*res)[r * cols + c] : 0.0);
    };
    for (std::size_t c = 0; c < cols; ++c) mean += v(c);
    mean /= static_cast<double>(cols);
    for (std::size_t c = 0; c < cols; ++c) var += (v(c) - mean) * (v(c) - mean);
    var /= static_cast<double>(cols);
    for (std::size_t c = 0; c < cols; ++c) {
      y[r * cols + c] = (v(c) - mean) / std::sqrt(var + eps) * (g ? (*g)[c] : 1.0) + (b ? (*b)[c] : 0.0);
    }
  }
  return y;
}

TEST(LayerNorm, MatchesTheReferenceOverTheLastDimension) {
  for (std::size_t rows : {1u, 3u, 17u}) {
    for (std::size_t cols : {1u, 3u, 17u, 1000u}) {
      const auto xv = random_vector(rows * cols, 8, -3.0f, 5.0f);
      const auto gv = random_vector(cols, 9), bv = random_vector(cols, 10);
      const Tensor x = Tensor::from_host(cpu(), Shape{rows, cols}, xv);
      const Tensor g = Tensor::from_host(cpu(), Shape{cols}, gv);
      const Tensor b = Tensor::from_host(cpu(), Shape{cols}, bv);
      const std::string what = "layer_norm " + std::to_string(rows) + "x" + std::to_string(cols);
      expect_near(layer_norm(x, g, b).to_host(),
                  ref_layer_norm(xv, nullptr, &gv, &bv, rows, cols, 1e-5), {}, 1e-4, 1e-4, what);
      expect_near(layer_norm(x, Tensor(), Tensor()).to_host(),
                  ref_layer_norm(xv, nullptr, nullptr, nullptr, rows, cols, 1e-5), {}, 1e-4, 1e-4,
                  what + " without affine");
    }
  }
}

TEST(LayerNormKernel, AddsTheResidualInPlace) {
  // y aliases x (the encoder's norm1 path): y = LN(x + residual).
  auto dev = cpu();
  const std::size_t rows = 17, cols = 1000;
  const auto xv = random_vector(rows * cols, 11), rv = random_vector(rows * cols, 12);
  const auto gv = random_vector(cols, 13), bv = random_vector(cols, 14);
  Tensor x = Tensor::from_host(dev, Shape{rows, cols}, xv);
  const Tensor r = Tensor::from_host(dev, Shape{rows, cols}, rv);
  const Tensor g = Tensor::from_host(dev, Shape{cols}, gv);
  const Tensor b = Tensor::from_host(dev, Shape{cols}, bv);
  {
    Encoder enc(dev->current_stream());
    dev->kernels().layer_norm(enc, x.data(), x.data(), r.data(), g.data(), b.data(), rows, cols,
                              1e-5f);
  }
  expect_near(x.to_host(), ref_layer_norm(xv, &rv, &gv, &bv, rows, cols, 1e-5), {}, 1e-4, 1e-4,
              "layer_norm with residual, in place");
}

TEST(Softmax, RowsSumToOneAndMatchTheReferenceEvenForLargeInputs) {
  for (std::size_t rows : {1u, 3u, 17u}) {
    for (std::size_t cols : {1u, 3u, 17u, 1000u}) {
      auto xv = random_vector(rows * cols, 15, -20.0f, 20.0f);
      xv[0] = 1000.0f;  // would overflow exp() without max subtraction
      const Tensor x = Tensor::from_host(cpu(), Shape{rows, cols}, xv);
      std::vector<double> want(rows * cols);
      for (std::size_t r = 0; r < rows; ++r) {
        double mx = -INFINITY, sum = 0;
        for (std::size_t c = 0; c < cols; ++c) mx = std::max<double>(mx, xv[r * cols + c]);
        for (std::size_t c = 0; c < cols; ++c) sum += std::exp(xv[r * cols + c] - mx);
        for (std::size_t c = 0; c < cols; ++c) want[r * cols + c] = std::exp(xv[r * cols + c] - mx) / sum;
      }
      expect_near(softmax(x).to_host(), want, {}, 1e-5, 1e-7,
                  "softmax " + std::to_string(rows) + "x" + std::to_string(cols));
    }
  }
}

TEST(Add, AddsElementwiseAndRejectsDifferentShapes) {
  const auto av = random_vector(17 * 3, 16), bv = random_vector(17 * 3, 17);
  const Tensor a = Tensor::from_host(cpu(), Shape{17, 3}, av);
  const Tensor b = Tensor::from_host(cpu(), Shape{17, 3}, bv);
  std::vector<double> want(av.size());
  for (std::size_t i = 0; i < av.size(); ++i) want[i] = static_cast<double>(av[i]) + bv[i];
  expect_near(add(a, b).to_host(), want, {}, 1e-7, 0.0, "add");
  EXPECT_THROW((void)add(a, b.reshape(Shape{3, 17})), Error);
}

std::vector<double> ref_matmul(const std::vector<float>& a, const std::vector<float>& b,
                               std::size_t batch, std::size_t m, std::size_t k, std::size_t n,
                               bool b_shared, std::vector<double>& mag) {
  std::vector<double> c(batch * m * n);
  mag.assign(c.size(), 0.0);
  for (std::size_t i = 0; i < batch; ++i) {
    const std::size_t boff = b_shared ? 0 : i * k * n;
    for (std::size_t r = 0; r < m; ++r) {
      for (std::size_t j = 0; j < n; ++j) {
        double s = 0, g = 0;
        for (std::size_t t = 0; t < k; ++t) {
          const double p = static_cast<double>(a[i * m * k + r * k + t]) * b[boff + t * n + j];
          s += p;
          g += std::abs(p);
        }
        c[i * m * n + r * n + j] = s;
        mag[i * m * n + r * n + j] = g;
      }
    }
  }
  return c;
}

TEST(Matmul, MatchesTheReferenceFor2DBatchedAndSharedOperands) {
  for (std::size_t batch : {1u, 3u}) {
    for (auto [m, k, n] : {std::tuple<std::size_t, std::size_t, std::size_t>{1, 1, 1},
                           {1, 1000, 3}, {17, 3, 1}, {3, 17, 1000}, {17, 1000, 17}}) {
      const auto av = random_vector(batch * m * k, 18), bv = random_vector(batch * k * n, 19);
      std::vector<double> mag;
      const std::string what = "matmul b" + std::to_string(batch) + " " + std::to_string(m) +
                               "x" + std::to_string(k) + "x" + std::to_string(n);
      const Tensor b3 = Tensor::from_host(cpu(), Shape{batch, k, n}, bv);
      const Tensor a3 = Tensor::from_host(cpu(), Shape{batch, m, k}, av);
      auto want = ref_matmul(av, bv, batch, m, k, n, false, mag);
      expect_near(matmul(a3, b3).to_host(), want, mag, 1e-5, 1e-6, what);
      // b shared by every batch entry: its first k x n block.
      const std::vector<float> b2v(bv.begin(), bv.begin() + static_cast<std::ptrdiff_t>(k * n));
      const Tensor b2 = Tensor::from_host(cpu(), Shape{k, n}, b2v);
      want = ref_matmul(av, b2v, batch, m, k, n, true, mag);
      expect_near(matmul(a3, b2).to_host(), want, mag, 1e-5, 1e-6, what + " shared b");
      if (batch == 1) {
        expect_near(matmul(a3.reshape(Shape{m, k}), b2).to_host(), want, mag, 1e-5, 1e-6,
                    what + " 2-D");
      }
    }
  }
}

TEST(GemmKernel, HonoursTransposesLeadingDimensionsAlphaAndBeta) {
  auto dev = cpu();
  const std::size_t m = 17, n = 3, k = 1000, pad = 5;
  for (Transpose ta : {Transpose::kNo, Transpose::kYes}) {
    for (Transpose tb : {Transpose::kNo, Transpose::kYes}) {
      // Stored shapes with padding columns (ld > row length).
      const std::size_t a_rows = ta == Transpose::kNo ? m : k, a_cols = ta == Transpose::kNo ? k : m;
      const std::size_t b_rows = tb == Transpose::kNo ? k : n, b_cols = tb == Transpose::kNo ? n : k;
      const auto av = random_vector(a_rows * (a_cols + pad), 20);
      const auto bv = random_vector(b_rows * (b_cols + pad), 21);
      const auto cv = random_vector(m * (n + pad), 22);
      const Tensor a = Tensor::from_host(dev, Shape{av.size()}, av);
      const Tensor b = Tensor::from_host(dev, Shape{bv.size()}, bv);
      Tensor c = Tensor::from_host(dev, Shape{cv.size()}, cv);
      GemmArgs g;
      g.trans_a = ta;
      g.trans_b = tb;
      g.m = m;
      g.n = n;
      g.k = k;
      g.alpha = 0.5f;
      g.beta = 2.0f;
      g.a = a.data();
      g.lda = a_cols + pad;
      g.b = b.data();
      g.ldb = b_cols + pad;
      g.c = c.data();
      g.ldc = n + pad;
      {
        Encoder enc(dev->current_stream());
        dev->kernels().gemm(enc, g);
      }
      std::vector<double> want(cv.begin(), cv.end()), mag(cv.size(), 0.0);
      for (std::size_t r = 0; r < m; ++r) {
        for (std::size_t j = 0; j < n; ++j) {
          double s = 0, q = 0;
          for (std::size_t t = 0; t < k; ++t) {
            const double x = ta == Transpose::kNo ? av[r * g.lda + t] : av[t * g.lda + r];
            const double y = tb == Transpose::kNo ? bv[t * g.ldb + j] : bv[j * g.ldb + t];
            s += x * y;
            q += std::abs(x * y);
          }
          want[r * g.ldc + j] = 0.5 * s + 2.0 * cv[r * g.ldc + j];
          mag[r * g.ldc + j] = 0.5 * q + 2.0 * std::abs(cv[r * g.ldc + j]);
        }
      }
      expect_near(c.to_host(), want, mag, 1e-5, 1e-6,
                  "gemm ta=" + std::to_string(static_cast<int>(ta)) +
                      " tb=" + std::to_string(static_cast<int>(tb)));
    }
  }
}

TEST(Transpose, SwapsTheLastTwoDimensions) {
  for (auto [b, r, c] : {std::tuple<std::size_t, std::size_t, std::size_t>{1, 1, 1},
                         {1, 3, 17}, {3, 17, 1}, {2, 1000, 17}, {1, 33, 65}}) {
    const auto xv = random_vector(b * r * c, 23);
    const Tensor x = Tensor::from_host(cpu(), Shape{b, r, c}, xv);
    const Tensor y = transpose(x);
    ASSERT_EQ(y.shape(), (Shape{b, c, r}));
    std::vector<double> want(xv.size());
    for (std::size_t i = 0; i < b; ++i)
      for (std::size_t p = 0; p < r; ++p)
        for (std::size_t q = 0; q < c; ++q) want[i * r * c + q * r + p] = xv[i * r * c + p * c + q];
    expect_near(y.to_host(), want, {}, 0.0, 0.0, "transpose");
  }
}

TEST(SplitConcat, SplitAlongTheBatchDimensionThenConcatRoundTrips) {
  const auto xv = random_vector(17 * 3, 24);
  const Tensor x = Tensor::from_host(cpu(), Shape{17, 3}, xv);
  const auto parts = split(x, {1, 0, 16});
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].shape(), (Shape{1, 3}));
  EXPECT_EQ(parts[1].shape(), (Shape{0, 3}));
  EXPECT_EQ(parts[2].shape(), (Shape{16, 3}));
  EXPECT_EQ(parts[2].to_host()[0], xv[3]);
  const Tensor y = concat({parts[2], parts[0]});
  std::vector<double> want(xv.begin() + 3, xv.end());
  want.insert(want.end(), xv.begin(), xv.begin() + 3);
  expect_near(y.to_host(), want, {}, 0.0, 0.0, "concat");
  EXPECT_THROW((void)split(x, {1, 2}), Error);
  EXPECT_THROW((void)concat({x, make(Shape{2, 4}, 1)}), Error);
  EXPECT_THROW((void)concat({}), Error);
  EXPECT_EQ(reshape(x, Shape{3, 17}).shape(), (Shape{3, 17}));
  EXPECT_THROW((void)reshape(x, Shape{4, 13}), Error);
}

TEST(CopyKernel, Copy2dCopiesABlockBetweenStrides) {
  auto dev = cpu();
  const auto sv = random_vector(17 * 10, 25);
  const Tensor src = Tensor::from_host(dev, Shape{17, 10}, sv);
  Tensor dst = Tensor::zeros(dev, Shape{17, 4});
  {
    Encoder enc(dev->current_stream());
    dev->kernels().copy_2d(enc, dst.data(), 4, src.data() + 3, 10, 17, 3);  // cols 3..5
  }
  const auto got = dst.to_host();
  for (std::size_t r = 0; r < 17; ++r) {
    for (std::size_t c = 0; c < 3; ++c) ASSERT_EQ(got[r * 4 + c], sv[r * 10 + 3 + c]);
    ASSERT_EQ(got[r * 4 + 3], 0.0f);
  }
}

// Naive multi-head attention, PyTorch's formula, in double.
std::vector<double> ref_mha(const std::vector<float>& x, const std::vector<float>& wi,
                            const std::vector<float>& bi, const std::vector<float>& wo,
                            const std::vector<float>& bo, std::size_t batch, std::size_t seq,
                            std::size_t d, std::size_t heads) {
  const std::size_t hd = d / heads;
  std::vector<double> qkv(batch * seq * 3 * d), att(batch * seq * d), y(batch * seq * d);
  for (std::size_t t = 0; t < batch * seq; ++t)
    for (std::size_t o = 0; o < 3 * d; ++o) {
      double s = bi[o];
      for (std::size_t i = 0; i < d; ++i) s += static_cast<double>(x[t * d + i]) * wi[o * d + i];
      qkv[t * 3 * d + o] = s;
    }
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t h = 0; h < heads; ++h)
      for (std::size_t s = 0; s < seq; ++s) {
        std::vector<double> p(seq);
        double mx = -INFINITY, sum = 0;
        for (std::size_t t = 0; t < seq; ++t) {
          double dot = 0;
          for (std::size_t j = 0; j < hd; ++j)
            dot += qkv[(b * seq + s) * 3 * d + h * hd + j] * qkv[(b * seq + t) * 3 * d + d + h * hd + j];
          p[t] = dot / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, p[t]);
        }
        for (auto& v : p) sum += (v = std::exp(v - mx));
        for (std::size_t j = 0; j < hd; ++j) {
          double o = 0;
          for (std::size_t t = 0; t < seq; ++t) o += p[t] / sum * qkv[(b * seq + t) * 3 * d + 2 * d + h * hd + j];
          att[(b * seq + s) * d + h * hd + j] = o;
        }
      }
  for (std::size_t t = 0; t < batch * seq; ++t)
    for (std::size_t o = 0; o < d; ++o) {
      double s = bo[o];
      for (std::size_t i = 0; i < d; ++i) s += att[t * d + i] * wo[o * d + i];
      y[t * d + o] = s;
    }
  return y;
}

TEST(MultiHeadAttention, MatchesTheNaiveReference) {
  for (auto [batch, seq, d, heads] :
       {std::tuple<std::size_t, std::size_t, std::size_t, std::size_t>{1, 1, 4, 1},
        {1, 3, 12, 3}, {3, 17, 16, 4}, {2, 32, 64, 4}}) {
    const auto xv = random_vector(batch * seq * d, 26), wi = random_vector(3 * d * d, 27),
               bi = random_vector(3 * d, 28), wo = random_vector(d * d, 29),
               bo = random_vector(d, 30);
    const auto t = [](const Shape& s, const std::vector<float>& v) {
      return Tensor::from_host(Device::get("cpu"), s, v);
    };
    const Tensor y = multi_head_attention(t(Shape{batch, seq, d}, xv), t(Shape{3 * d, d}, wi),
                                          t(Shape{3 * d}, bi), t(Shape{d, d}, wo), t(Shape{d}, bo),
                                          heads);
    expect_near(y.to_host(), ref_mha(xv, wi, bi, wo, bo, batch, seq, d, heads), {}, 1e-4, 1e-4,
                "mha b" + std::to_string(batch) + " s" + std::to_string(seq) + " d" +
                    std::to_string(d) + " h" + std::to_string(heads));
  }
}

TEST(TensorApi, RejectsHalfPrecisionWithAClearError) {
  try {
    (void)Tensor::empty(cpu(), Shape{2}, DType::kFloat16);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("float16"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)Tensor::empty(cpu(), Shape{2}, DType::kBFloat16), Error);
}

TEST(TensorApi, HostRoundTripSliceAndReshapeShareMemory) {
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  const Tensor t = Tensor::from_host(cpu(), Shape{3, 2}, v);
  EXPECT_EQ(t.to_host(), v);
  EXPECT_EQ(t.slice(1, 3).to_host(), (std::vector<float>{3, 4, 5, 6}));
  EXPECT_EQ(t.reshape(Shape{2, 3}).data(), t.data());
  EXPECT_THROW((void)t.slice(2, 4), Error);
  EXPECT_THROW((void)Tensor::from_host(cpu(), Shape{4}, v), Error);
  EXPECT_EQ(Tensor::zeros(cpu(), Shape{1, 3}).to_host(), (std::vector<float>{0, 0, 0}));
}

}  // namespace
}  // namespace tandem::nn
