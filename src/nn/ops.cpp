#include "tandem/nn/ops.h"

#include <cmath>
#include <string>

#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem::nn {

namespace {

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw Error(ErrorKind::kInvalidArgument, std::string(op) + ": " + what);
}

void check_defined(const char* op, const char* arg, const Tensor& t) {
  if (!t.defined()) fail(op, std::string(arg) + " is an undefined tensor");
  if (t.dtype() != DType::kFloat32) {
    fail(op, std::string(arg) + " is " + std::string(to_string(t.dtype())) +
                 "; only float32 is supported so far");
  }
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (&a.device() != &b.device()) {
    fail(op, "tensors on different devices (" + a.device().name() + " and " + b.device().name() +
                 "); copy them to one device first");
  }
}

std::size_t last(const Tensor& t) { return t.rank() ? t.dim(t.rank() - 1) : 1; }
std::size_t rows_of(const Tensor& t) {
  const std::size_t l = last(t);
  return l ? t.numel() / l : 0;
}

const Kernels& kernels_of(const Tensor& t) { return t.device().kernels(); }

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Activation act) {
  constexpr const char* kOp = "linear";
  check_defined(kOp, "x", x);
  check_defined(kOp, "weight", weight);
  check_same_device(kOp, x, weight);
  if (x.rank() < 1 || weight.rank() != 2 || weight.dim(1) != last(x)) {
    fail(kOp, "x " + x.shape().to_string() + " and weight " + weight.shape().to_string() +
                  " do not fit: expected x [..., in] and weight [out, in]");
  }
  const std::size_t out = weight.dim(0), in = weight.dim(1);
  if (bias.defined()) {
    check_defined(kOp, "bias", bias);
    check_same_device(kOp, x, bias);
    if (bias.rank() != 1 || bias.dim(0) != out) {
      fail(kOp, "bias " + bias.shape().to_string() + " does not fit weight " +
                    weight.shape().to_string() + ": expected [" + std::to_string(out) + "]");
    }
  }
  Tensor y = Tensor::empty(x.device_ptr(), x.shape().with(x.rank() - 1, out));
  Encoder enc(x.device().current_stream());
  kernels_of(x).linear(enc, y.data(), x.data(), weight.data(),
                       bias.defined() ? bias.data() : nullptr, rows_of(x), in, out, act);
  return y;
}

namespace {
Tensor activation(const char* op, const Tensor& x, Activation act) {
  check_defined(op, "x", x);
  Tensor y = Tensor::empty(x.device_ptr(), x.shape());
  Encoder enc(x.device().current_stream());
  kernels_of(x).bias_activation(enc, y.data(), x.data(), nullptr, rows_of(x), last(x), act);
  return y;
}
}  // namespace

Tensor relu(const Tensor& x) { return activation("relu", x, Activation::kRelu); }
Tensor gelu(const Tensor& x) { return activation("gelu", x, Activation::kGelu); }

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  constexpr const char* kOp = "layer_norm";
  check_defined(kOp, "x", x);
  const std::size_t cols = last(x);
  if (x.rank() < 1 || cols == 0) fail(kOp, "x " + x.shape().to_string() + " has no elements to normalize");
  for (const auto* p : {&gamma, &beta}) {
    if (!p->defined()) continue;
    check_defined(kOp, p == &gamma ? "gamma" : "beta", *p);
    check_same_device(kOp, x, *p);
    if (p->rank() != 1 || p->dim(0) != cols) {
      fail(kOp, std::string(p == &gamma ? "gamma " : "beta ") + p->shape().to_string() +
                    " does not fit x " + x.shape().to_string());
    }
  }
  Tensor y = Tensor::empty(x.device_ptr(), x.shape());
  Encoder enc(x.device().current_stream());
  kernels_of(x).layer_norm(enc, y.data(), x.data(), nullptr,
                           gamma.defined() ? gamma.data() : nullptr,
                           beta.defined() ? beta.data() : nullptr, rows_of(x), cols, eps);
  return y;
}

Tensor softmax(const Tensor& x) {
  check_defined("softmax", "x", x);
  if (x.rank() < 1 || last(x) == 0) fail("softmax", "x " + x.shape().to_string() + " has an empty last dimension");
  Tensor y = Tensor::empty(x.device_ptr(), x.shape());
  Encoder enc(x.device().current_stream());
  kernels_of(x).softmax(enc, y.data(), x.data(), rows_of(x), last(x), 1.0f);
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  check_defined("add", "a", a);
  check_defined("add", "b", b);
  check_same_device("add", a, b);
  if (!(a.shape() == b.shape())) {
    fail("add", "shapes differ: " + a.shape().to_string() + " and " + b.shape().to_string());
  }
  Tensor y = Tensor::empty(a.device_ptr(), a.shape());
  Encoder enc(a.device().current_stream());
  kernels_of(a).add(enc, y.data(), a.data(), b.data(), a.numel());
  return y;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  constexpr const char* kOp = "matmul";
  check_defined(kOp, "a", a);
  check_defined(kOp, "b", b);
  check_same_device(kOp, a, b);
  const bool batched = a.rank() == 3;
  const bool ok = (a.rank() == 2 && b.rank() == 2) ||
                  (a.rank() == 3 && (b.rank() == 2 || (b.rank() == 3 && b.dim(0) == a.dim(0))));
  if (!ok || a.dim(a.rank() - 1) != b.dim(b.rank() - 2)) {
    fail(kOp, "a " + a.shape().to_string() + " and b " + b.shape().to_string() +
                  " do not fit: expected [m, k].[k, n], [B, m, k].[B, k, n] or [B, m, k].[k, n]");
  }
  GemmArgs g;
  g.batch = batched ? a.dim(0) : 1;
  g.m = a.dim(a.rank() - 2);
  g.k = a.dim(a.rank() - 1);
  g.n = b.dim(b.rank() - 1);
  Tensor y = Tensor::empty(a.device_ptr(), batched ? Shape{g.batch, g.m, g.n} : Shape{g.m, g.n});
  g.a = a.data();
  g.lda = g.k;
  g.stride_a = g.m * g.k;
  g.b = b.data();
  g.ldb = g.n;
  g.stride_b = b.rank() == 3 ? g.k * g.n : 0;
  g.c = y.data();
  g.ldc = g.n;
  g.stride_c = g.m * g.n;
  Encoder enc(a.device().current_stream());
  kernels_of(a).gemm(enc, g);
  return y;
}

Tensor transpose(const Tensor& x) {
  check_defined("transpose", "x", x);
  if (x.rank() < 2) fail("transpose", "x " + x.shape().to_string() + " has rank < 2");
  const std::size_t r = x.dim(x.rank() - 2), c = x.dim(x.rank() - 1);
  Tensor y = Tensor::empty(x.device_ptr(), x.shape().with(x.rank() - 2, c).with(x.rank() - 1, r));
  const std::size_t batch = (r * c != 0) ? x.numel() / (r * c) : 0;
  Encoder enc(x.device().current_stream());
  kernels_of(x).transpose(enc, y.data(), x.data(), batch, r, c);
  return y;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  check_defined("reshape", "x", x);
  return x.reshape(shape);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<std::size_t>& sizes) {
  check_defined("split", "x", x);
  if (x.rank() < 1) fail("split", "x is a scalar");
  std::size_t total = 0;
  for (std::size_t s : sizes) total += s;
  if (total != x.dim(0)) {
    fail("split", "sizes add up to " + std::to_string(total) + ", but dimension 0 of " +
                      x.shape().to_string() + " is " + std::to_string(x.dim(0)));
  }
  std::vector<Tensor> parts;
  parts.reserve(sizes.size());
  std::size_t at = 0;
  for (std::size_t s : sizes) {
    parts.push_back(x.slice(at, at + s));
    at += s;
  }
  return parts;
}

Tensor concat(const std::vector<Tensor>& parts) {
  if (parts.empty()) fail("concat", "no tensors given");
  const Tensor& first = parts.front();
  check_defined("concat", "parts[0]", first);
  if (first.rank() < 1) fail("concat", "parts[0] is a scalar");
  std::size_t rows = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    const std::string name = "parts[" + std::to_string(i) + "]";
    check_defined("concat", name.c_str(), p);
    check_same_device("concat", first, p);
    if (!(p.shape().with(0, 0) == first.shape().with(0, 0))) {
      fail("concat", name + " " + p.shape().to_string() + " differs from parts[0] " +
                         first.shape().to_string() + " past dimension 0");
    }
    rows += p.dim(0);
  }
  Tensor y = Tensor::empty(first.device_ptr(), first.shape().with(0, rows));
  Encoder enc(first.device().current_stream());
  std::size_t at = 0;
  for (const Tensor& p : parts) {
    if (p.numel()) kernels_of(p).copy(enc, y.data() + at, p.data(), p.size_bytes());
    at += p.numel();
  }
  return y;
}

Tensor multi_head_attention(const Tensor& x, const Tensor& in_proj_weight,
                            const Tensor& in_proj_bias, const Tensor& out_proj_weight,
                            const Tensor& out_proj_bias, std::size_t heads) {
  constexpr const char* kOp = "multi_head_attention";
  check_defined(kOp, "x", x);
  if (x.rank() != 3) fail(kOp, "x " + x.shape().to_string() + " is not [batch, seq, d]");
  const std::size_t batch = x.dim(0), seq = x.dim(1), d = x.dim(2);
  if (heads == 0 || d % heads != 0) {
    fail(kOp, std::to_string(heads) + " heads do not divide d = " + std::to_string(d));
  }
  const Shape w_in{3 * d, d}, b_in{3 * d}, w_out{d, d}, b_out{d};
  const std::pair<const Tensor*, const Shape*> checks[] = {
      {&in_proj_weight, &w_in}, {&in_proj_bias, &b_in}, {&out_proj_weight, &w_out},
      {&out_proj_bias, &b_out}};
  const char* names[] = {"in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias"};
  for (std::size_t i = 0; i < 4; ++i) {
    check_defined(kOp, names[i], *checks[i].first);
    check_same_device(kOp, x, *checks[i].first);
    if (!(checks[i].first->shape() == *checks[i].second)) {
      fail(kOp, std::string(names[i]) + " is " + checks[i].first->shape().to_string() +
                    "; expected " + checks[i].second->to_string() + " for d = " +
                    std::to_string(d));
    }
  }
  const std::size_t rows = batch * seq, head_dim = d / heads;
  // One workspace: qkv [rows, 3d], attention output [rows, d], scores [batch*heads*seq*seq].
  Tensor ws = Tensor::empty(x.device_ptr(), Shape{rows * 4 * d + batch * heads * seq * seq});
  float* qkv = ws.data();
  float* att = qkv + rows * 3 * d;
  float* scores = att + rows * d;
  Tensor y = Tensor::empty(x.device_ptr(), x.shape());
  const Kernels& k = kernels_of(x);
  Encoder enc(x.device().current_stream());
  k.linear(enc, qkv, x.data(), in_proj_weight.data(), in_proj_bias.data(), rows, d, 3 * d,
           Activation::kNone);
  k.attention(enc, att, qkv, scores, batch, seq, heads, head_dim,
              1.0f / std::sqrt(static_cast<float>(head_dim)));
  k.linear(enc, y.data(), att, out_proj_weight.data(), out_proj_bias.data(), rows, d, d,
           Activation::kNone);
  return y;
}

}  // namespace tandem::nn
