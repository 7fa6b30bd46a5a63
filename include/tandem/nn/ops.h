// ops.h — tensor operations of the inference layer, encoded on the calling thread's stream.
//
// Each op checks its arguments (same device, shapes; Error(kInvalidArgument) naming the op and
// the shapes), allocates its result on the calling thread's stream (Device::current_stream()),
// and records one command buffer of backend kernels (kernels.h) there. Ops return at once; the
// result is ready in stream order (read it with Tensor::to_host, which synchronizes). Errors a
// kernel raises while running come back from that synchronize.
//
// Threading: every op may be called from any number of threads at once; inputs are only read.
// Inputs made on another thread's stream must be complete (that stream synchronized) first.
// Dtype: float32 only (see tensor.h).
//
// The reference models (models.h) do not call these one by one: they record a whole forward
// into one command buffer with a single workspace, through the same kernels.
#pragma once

#include <cstddef>
#include <vector>

#include "tandem/kernels.h"
#include "tandem/nn/tensor.h"

namespace tandem::nn {

// linear(x, weight, bias, act): act(x . weight^T + bias), PyTorch's nn.Linear (+ activation).
// x: [..., in]; weight: [out, in]; bias: [out] or undefined (no bias). Result: [..., out].
[[nodiscard]] Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                            Activation act = Activation::kNone);
// relu / gelu (exact, erf form): elementwise; same shape.
[[nodiscard]] Tensor relu(const Tensor& x);
[[nodiscard]] Tensor gelu(const Tensor& x);
// layer_norm(x, gamma, beta, eps): over the last dimension (PyTorch's LayerNorm(normalized_shape
// = x.shape[-1])); gamma, beta: [last] or undefined (1 / 0). Biased variance.
[[nodiscard]] Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                float eps = 1e-5f);
// softmax(x): over the last dimension.
[[nodiscard]] Tensor softmax(const Tensor& x);
// add(a, b): elementwise; shapes must be equal.
[[nodiscard]] Tensor add(const Tensor& a, const Tensor& b);
// matmul(a, b): matrix products over the last two dimensions:
//   a [m, k]        . b [k, n]        -> [m, n]
//   a [batch, m, k] . b [batch, k, n] -> [batch, m, n]
//   a [batch, m, k] . b [k, n]        -> [batch, m, n]   (b shared by every batch entry)
[[nodiscard]] Tensor matmul(const Tensor& a, const Tensor& b);
// transpose(x): swaps the last two dimensions ([.., r, c] -> [.., c, r]); rank >= 2. Copies.
[[nodiscard]] Tensor transpose(const Tensor& x);
// reshape(x, shape): a view (numel must match). Same as x.reshape(shape).
[[nodiscard]] Tensor reshape(const Tensor& x, const Shape& shape);
// split(x, sizes): views of consecutive ranges of dimension 0 (the batch dimension); the sizes
// must add up to x.dim(0).
[[nodiscard]] std::vector<Tensor> split(const Tensor& x, const std::vector<std::size_t>& sizes);
// concat(parts): joins along dimension 0; all parts have the same dims after the first and the
// same device. One copy per part, in one command buffer. At least one part.
[[nodiscard]] Tensor concat(const std::vector<Tensor>& parts);
// multi_head_attention(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, heads):
// PyTorch's nn.MultiheadAttention(d, heads, batch_first=True)(x, x, x, need_weights=False)
// without masks or dropout: x [batch, seq, d]; in_proj_weight [3d, d], in_proj_bias [3d];
// out_proj_weight [d, d], out_proj_bias [d]; heads divides d. Result [batch, seq, d].
[[nodiscard]] Tensor multi_head_attention(const Tensor& x, const Tensor& in_proj_weight,
                                          const Tensor& in_proj_bias,
                                          const Tensor& out_proj_weight,
                                          const Tensor& out_proj_bias, std::size_t heads);

}  // namespace tandem::nn
