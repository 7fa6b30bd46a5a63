// transformer_encoder.cpp — the reference encoder: two post-norm TransformerEncoderLayers
// (d_model 256, 4 heads, feed-forward 1024, ReLU, LayerNorm eps 1e-5, batch_first).
#include <cmath>

#include "nn/model_impl.h"
#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/kernels.h"
#include "tandem/stream.h"

namespace tandem::nn::detail {

namespace {

constexpr std::size_t kLayers = 2, kModel = 256, kHeads = 4, kFeedForward = 1024, kSeq = 32;
constexpr float kEps = 1e-5f;

// Parameter order within a layer (PyTorch's state_dict order).
enum LayerParam {
  kInW, kInB, kOutW, kOutB, kLin1W, kLin1B, kLin2W, kLin2B, kNorm1W, kNorm1B, kNorm2W, kNorm2B,
  kParamsPerLayer
};

class TransformerEncoder final : public Model {
 public:
  TransformerEncoder(const std::shared_ptr<Device>& device, const ModelOptions& options)
      : Model(device) {
    std::vector<ParamSpec> specs;
    for (std::size_t l = 0; l < kLayers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      // PyTorch initializes in_proj with xavier_uniform and zero biases; tandem's random weights
      // only need to be deterministic and of a sensible scale, so fan-in uniform throughout.
      specs.push_back({p + "self_attn.in_proj_weight", Shape{3 * kModel, kModel}, Init::kUniformFanIn, kModel});
      specs.push_back({p + "self_attn.in_proj_bias", Shape{3 * kModel}, Init::kUniformFanIn, kModel});
      specs.push_back({p + "self_attn.out_proj.weight", Shape{kModel, kModel}, Init::kUniformFanIn, kModel});
      specs.push_back({p + "self_attn.out_proj.bias", Shape{kModel}, Init::kUniformFanIn, kModel});
      specs.push_back({p + "linear1.weight", Shape{kFeedForward, kModel}, Init::kUniformFanIn, kModel});
      specs.push_back({p + "linear1.bias", Shape{kFeedForward}, Init::kUniformFanIn, kModel});
      specs.push_back({p + "linear2.weight", Shape{kModel, kFeedForward}, Init::kUniformFanIn, kFeedForward});
      specs.push_back({p + "linear2.bias", Shape{kModel}, Init::kUniformFanIn, kFeedForward});
      specs.push_back({p + "norm1.weight", Shape{kModel}, Init::kOnes, 1});
      specs.push_back({p + "norm1.bias", Shape{kModel}, Init::kZeros, 1});
      specs.push_back({p + "norm2.weight", Shape{kModel}, Init::kOnes, 1});
      specs.push_back({p + "norm2.bias", Shape{kModel}, Init::kZeros, 1});
    }
    params_ = load_parameters(specs, device, options, "encoder");
    for (std::size_t l = 0; l < kLayers; ++l) {
      const auto w = [&](LayerParam i) { return params_[l * kParamsPerLayer + i].second.data(); };
      layers_[l] = {w(kInW),   w(kInB),   w(kOutW),   w(kOutB),   w(kLin1W),  w(kLin1B),
                    w(kLin2W), w(kLin2B), w(kNorm1W), w(kNorm1B), w(kNorm2W), w(kNorm2B)};
    }
  }

  std::string_view name() const override { return "encoder"; }
  Shape input_shape(std::size_t batch) const override { return Shape{batch, kSeq, kModel}; }
  Shape output_shape(std::size_t batch) const override { return Shape{batch, kSeq, kModel}; }

  Tensor forward(const Tensor& x) const override {
    check(x);
    Tensor y = Tensor::empty(device_, x.shape());
    encode(x, y, Keep::kInput);
    return y;
  }

  void forward_into(const Tensor& x, const Tensor& y) const override {
    check(x);
    check_output("encoder", *device_, y, x.shape());
    encode(x, y, Keep::kInputAndOutput);
  }

 private:
  // check(x): Error(kInvalidArgument) unless x is [batch, seq, 256] on this device.
  void check(const Tensor& x) const {
    // Any sequence length >= 1 is accepted; the reference workload uses 32.
    const bool rank3 = x.defined() && x.rank() == 3;
    const std::size_t batch = rank3 ? x.dim(0) : 0;
    const std::size_t seq = rank3 && x.dim(1) ? x.dim(1) : kSeq;
    check_input("encoder", *device_, x, Shape{batch, seq, kModel});
  }

  // encode(x, y, keep): the forward of x into y (x's shape), one command buffer on the calling
  // thread's stream.
  void encode(const Tensor& x, const Tensor& y, Keep keep) const {
    const std::size_t batch = x.dim(0), seq = x.dim(1);
    const std::size_t rows = batch * seq;
    constexpr std::size_t d = kModel, head_dim = kModel / kHeads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));

    Stream& stream = device_->current_stream();
    const Kernels& k = device_->kernels();
    // Declaration order matters: the Encoder commits before the workspace is freed.
    Tensor ws = Tensor::empty(
        device_, Shape{rows * (3 * d + d + d + kFeedForward + d + d) + batch * kHeads * seq * seq});
    float* qkv = ws.data();
    float* att = qkv + rows * 3 * d;
    float* t1 = att + rows * d;
    float* hidden = t1 + rows * d;
    float* ff = hidden + rows * kFeedForward;
    float* mid = ff + rows * d;
    float* scores = mid + rows * d;

    Encoder enc(stream);
    // The backend's fused forward where it has one (the workspace is larger than it needs:
    // rows x (4d + ff)), else op by op.
    const bool fused = k.encoder_stack(
        enc, {y.data(), x.data(), ws.data(), batch, seq, d, kHeads, kFeedForward,
              Activation::kRelu, kEps, layers_, kLayers});
    const float* in = x.data();
    for (std::size_t l = 0; l < kLayers && !fused; ++l) {
      const EncoderLayerParams& w = layers_[l];
      float* out = l + 1 == kLayers ? y.data() : mid;
      // x1 = norm1(x + out_proj(attention(in_proj(x))))
      k.linear(enc, qkv, in, w.in_w, w.in_b, rows, d, 3 * d, Activation::kNone);
      k.attention(enc, att, qkv, scores, batch, seq, kHeads, head_dim, scale);
      k.linear(enc, t1, att, w.out_w, w.out_b, rows, d, d, Activation::kNone);
      k.layer_norm(enc, t1, t1, in, w.norm1_w, w.norm1_b, rows, d, kEps);
      // out = norm2(x1 + linear2(relu(linear1(x1))))
      k.linear(enc, hidden, t1, w.lin1_w, w.lin1_b, rows, d, kFeedForward, Activation::kRelu);
      k.linear(enc, ff, hidden, w.lin2_w, w.lin2_b, rows, kFeedForward, d, Activation::kNone);
      k.layer_norm(enc, out, ff, t1, w.norm2_w, w.norm2_b, rows, d, kEps);
      in = out;
    }
    // Keep the input and the weights (and forward_into's output) alive until the work has run
    // (Note [Model threading]). These references die on the stream's worker; they are never the device's last one: the
    // calling thread's stream lease holds the device and synchronizes this stream before
    // releasing it.
    if (keep == Keep::kInputAndOutput) {
      enc.defer([keep_input = x, keep_output = y, keep_model = shared_from_this()] {});
    } else {
      enc.defer([keep_input = x, keep_model = shared_from_this()] {});
    }
    enc.commit();
  }

  EncoderLayerParams layers_[kLayers];  // the parameters' device pointers, by layer
};

}  // namespace

std::shared_ptr<const Model> make_encoder(const std::shared_ptr<Device>& device,
                                          const ModelOptions& options) {
  return std::make_shared<TransformerEncoder>(device, options);
}

}  // namespace tandem::nn::detail
