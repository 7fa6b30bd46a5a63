// kernels.h — Kernels: the table of device kernels every backend implements.
//
// Each kernel records work through an Encoder (so it runs in the encoder's stream order) on
// device pointers of that backend; pointers must stay valid until the work has run (Buffers freed
// in stream order guarantee it). Sizes are element counts of float32 unless named *_bytes.
// Kernels never block; errors raised while they run are delivered by synchronize/event waits.
// Implementations are stateless and thread-safe: one table per backend, shared by all threads.
//
// The nn kernels (gemm .. attention) serve the inference layer (include/tandem/nn/ops.h). Layouts
// are dense row-major float32; "rows x cols" means rows contiguous rows of cols elements unless
// a leading dimension (ld*, in elements, >= the row length) says otherwise. Unless a contract says
// "may alias", outputs must not overlap inputs. Sizes of 0 are allowed and do nothing. Kernels
// trust their arguments (the op layer validates shapes); they may use per-stream scratch of their
// own but never allocate device memory visible to the caller.
//
// Backends: src/backends/cpu (host worker threads), src/backends/agx_model (the cpu kernels
// behind a racy encoder layer), src/backends/cuda (own kernels, cuBLAS/cuBLASLt).
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace tandem {

class Encoder;
class Stream;
class ResidentChain;
struct ResidentLayer;
struct ResidentConfig;

// Transpose: whether a gemm operand is used as stored (kNo) or transposed (kYes).
enum class Transpose { kNo, kYes };

// Activation applied elementwise after a bias: none, ReLU, or GELU in PyTorch's exact form
// gelu(x) = 0.5 * x * (1 + erf(x / sqrt(2))).
enum class Activation { kNone, kRelu, kGelu };

// GemmArgs: C_i = alpha * op(A_i) . op(B_i) + beta * C_i for i in [0, batch), row-major.
// op(A_i) is m x k, op(B_i) is k x n, C_i is m x n.
//   A_i = a + i * stride_a, stored m x k (trans_a kNo, lda >= k) or k x m (kYes, lda >= m);
//   B_i = b + i * stride_b, stored k x n (trans_b kNo, ldb >= n) or n x k (kYes, ldb >= k);
//   C_i = c + i * stride_c, stored m x n, ldc >= n.
// A stride of 0 reuses one matrix for every i (broadcast; a and b only). beta == 0: C is written
// without being read (may hold garbage or NaN). C must not overlap A or B, nor C_j (j != i).
// Linear with PyTorch's weight layout is C = X . W^T: trans_b = kYes, W stored out x in.
struct GemmArgs {
  Transpose trans_a = Transpose::kNo;
  Transpose trans_b = Transpose::kNo;
  std::size_t m = 0, n = 0, k = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
  const float* a = nullptr;
  std::size_t lda = 0, stride_a = 0;
  const float* b = nullptr;
  std::size_t ldb = 0, stride_b = 0;
  float* c = nullptr;
  std::size_t ldc = 0, stride_c = 0;
  std::size_t batch = 1;
};

// EncoderLayerParams: one post-norm TransformerEncoderLayer's parameters (batch_first, no mask,
// no dropout), device memory in PyTorch's layouts: in_proj (3d x d, 3d), out_proj (d x d, d),
// linear1 (ff x d, ff), linear2 (d x ff, d), norm1 and norm2 (d, d each).
struct EncoderLayerParams {
  const float *in_w = nullptr, *in_b = nullptr, *out_w = nullptr, *out_b = nullptr;
  const float *lin1_w = nullptr, *lin1_b = nullptr, *lin2_w = nullptr, *lin2_b = nullptr;
  const float *norm1_w = nullptr, *norm1_b = nullptr, *norm2_w = nullptr, *norm2_b = nullptr;
};

// EncoderStackArgs: y = layer[n-1](... layer[0](x)), x and y batch x seq x d_model, where a layer
// is x1 = norm1(x + out_proj(attention(in_proj(x)))), out = norm2(x1 + linear2(act(linear1(x1)))),
// attention as Kernels::attention with `heads` heads and scale 1 / sqrt(d_model / heads), layer
// norms with eps. workspace: at least batch * seq * (4 * d_model + feed_forward) floats of
// device memory (contents undefined afterwards). y must not overlap x, the workspace or the
// parameters.
struct EncoderStackArgs {
  float* y = nullptr;
  const float* x = nullptr;
  float* workspace = nullptr;
  std::size_t batch = 0, seq = 0, d_model = 0, heads = 0, feed_forward = 0;
  Activation act = Activation::kRelu;
  float eps = 1e-5f;
  const EncoderLayerParams* layers = nullptr;
  std::size_t n_layers = 0;
};

class Kernels {
 public:
  virtual ~Kernels() = default;

  // Runtime kernels.
  virtual void fill(Encoder& enc, float* y, std::size_t n, float value) const = 0;
  // scale: y[i] = x[i] * a   (y may alias x)
  virtual void scale(Encoder& enc, float* y, const float* x, std::size_t n, float a) const = 0;
  // add: y[i] = a[i] + b[i]  (y may alias a or b)
  virtual void add(Encoder& enc, float* y, const float* a, const float* b,
                   std::size_t n) const = 0;
  // copy: device to device, bytes (regions must not overlap)
  virtual void copy(Encoder& enc, void* dst, const void* src, std::size_t bytes) const = 0;
  // sum: out[0] = sum of x[0..n)  (pairwise / tree order; float32 result)
  virtual void sum(Encoder& enc, float* out, const float* x, std::size_t n) const = 0;
  // Host <-> device copies; the host memory must stay valid until the work has run.
  virtual void copy_from_host(Encoder& enc, void* dst, const void* host_src,
                              std::size_t bytes) const = 0;
  virtual void copy_to_host(Encoder& enc, void* host_dst, const void* src,
                            std::size_t bytes) const = 0;
  // empty: the smallest unit of stream work (cuda: an empty kernel; cpu: an empty host
  // function), for measuring the launch + synchronize ceiling (`tandem bench --model empty`).
  virtual void empty(Encoder& enc) const = 0;

  // ---- nn kernels (include/tandem/nn/ops.h) ----

  // gemm: see GemmArgs. Row-major; a cuBLAS (column-major) backend computes C^T = op(B)^T op(A)^T.
  virtual void gemm(Encoder& enc, const GemmArgs& args) const = 0;

  // linear: y = act(x . w^T + bias), PyTorch's nn.Linear (+ a fused activation).
  //   x: rows x in;  w: out x in (PyTorch's weight layout);  bias: out, or nullptr (no bias);
  //   y: rows x out, must not overlap x, w or bias.
  virtual void linear(Encoder& enc, float* y, const float* x, const float* w, const float* bias,
                      std::size_t rows, std::size_t in, std::size_t out,
                      Activation act) const = 0;

  // bias_activation: y[r][c] = act(x[r][c] + bias[c]) for rows x cols; bias may be nullptr (no
  // bias). y may alias x exactly (in place).
  virtual void bias_activation(Encoder& enc, float* y, const float* x, const float* bias,
                               std::size_t rows, std::size_t cols, Activation act) const = 0;

  // layer_norm: per row r of rows x cols, with v = x[r] + residual[r] (residual may be nullptr):
  //   y[r][c] = (v[c] - mean(v)) / sqrt(var(v) + eps) * gamma[c] + beta[c]
  // var is the biased variance (PyTorch's LayerNorm). gamma/beta may be nullptr (1 / 0).
  // y may alias x or residual exactly (in place); cols >= 1.
  virtual void layer_norm(Encoder& enc, float* y, const float* x, const float* residual,
                          const float* gamma, const float* beta, std::size_t rows,
                          std::size_t cols, float eps) const = 0;

  // softmax: y[r] = softmax(scale * x[r]) per row of rows x cols (max-subtracted, so large
  // inputs do not overflow). y may alias x exactly. cols >= 1.
  virtual void softmax(Encoder& enc, float* y, const float* x, std::size_t rows,
                       std::size_t cols, float scale) const = 0;

  // transpose: y_b = x_b^T for b in [0, batch): x is batch x rows x cols, y is batch x cols x
  // rows (y[b][c][r] = x[b][r][c]). y must not overlap x.
  virtual void transpose(Encoder& enc, float* y, const float* x, std::size_t batch,
                         std::size_t rows, std::size_t cols) const = 0;

  // copy_2d: copies a rows x cols block: dst[r * dst_ld + c] = src[r * src_ld + c]
  // (dst_ld, src_ld >= cols). The building block of split / concat along the last dimension.
  // Regions must not overlap.
  virtual void copy_2d(Encoder& enc, float* dst, std::size_t dst_ld, const float* src,
                       std::size_t src_ld, std::size_t rows, std::size_t cols) const = 0;

  // attention: the core of multi-head self-attention (PyTorch's MultiheadAttention after
  // in_proj, before out_proj; no mask, no dropout). With d = heads * head_dim:
  //   qkv: batch x seq x 3d, each token's row is [q | k | v] (in_proj's output), and within q
  //        (k, v) head h owns columns [h * head_dim, (h + 1) * head_dim);
  //   out: batch x seq x d, out[b][s][h*head_dim + j] = sum_t P[t] * v[b][t][h*head_dim + j]
  //        with P = softmax_t(scale * q[b][s]_h . k[b][t]_h)  (scale is 1/sqrt(head_dim) in
  //        PyTorch);
  //   scratch: at least batch * heads * seq * seq floats of device memory the kernel may use
  //        (contents undefined afterwards).
  // out must not overlap qkv or scratch.
  virtual void attention(Encoder& enc, float* out, const float* qkv, float* scratch,
                         std::size_t batch, std::size_t seq, std::size_t heads,
                         std::size_t head_dim, float scale) const = 0;

  // ---- fused model forwards (optional) ----
  // encoder_stack(enc, args): encodes the whole stack as the backend's fused kernel and returns
  // true when it has one for these sizes (and its configuration enables it); otherwise encodes
  // nothing and returns false, and the caller runs the layers op by op (linear, attention,
  // layer_norm). Results equal the op-by-op forward's up to fp32 rounding. Default: false.
  // cuda: Note [Fused encoder] (src/backends/cuda/encoder_kernel.cu).
  [[nodiscard]] virtual bool encoder_stack(Encoder& enc, const EncoderStackArgs& args) const;

  // ---- resident serving (tandem/resident.h, Note [Resident serving]) ----
  // start_resident_chain(stream, layers, config): a persistent grid on `stream`'s device that
  // serves forwards of the chain `layers` (1..kResidentMaxLayers, each layer's in equal to the
  // previous out). `stream` only names the device: the chain runs on a stream of its own.
  // Error(kInvalidArgument) for a bad chain or config (naming the value and the limit) or when
  // the backend has no resident mode (the default: only cuda has one).
  [[nodiscard]] virtual std::unique_ptr<ResidentChain> start_resident_chain(
      Stream& stream, const std::vector<ResidentLayer>& layers,
      const ResidentConfig& config) const;
};

}  // namespace tandem
