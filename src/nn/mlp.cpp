// mlp.cpp — the reference MLP: Linear(512,1024)-ReLU-Linear(1024,1024)-ReLU-Linear(1024,512).
#include "nn/model_impl.h"
#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/kernels.h"
#include "tandem/stream.h"

namespace tandem::nn::detail {

namespace {

constexpr std::size_t kIn = 512, kHidden = 1024, kOut = 512;

class Mlp final : public Model {
 public:
  Mlp(const std::shared_ptr<Device>& device, const ModelOptions& options) : Model(device) {
    const std::vector<ParamSpec> specs = {
        {"0.weight", Shape{kHidden, kIn}, Init::kUniformFanIn, kIn},
        {"0.bias", Shape{kHidden}, Init::kUniformFanIn, kIn},
        {"2.weight", Shape{kHidden, kHidden}, Init::kUniformFanIn, kHidden},
        {"2.bias", Shape{kHidden}, Init::kUniformFanIn, kHidden},
        {"4.weight", Shape{kOut, kHidden}, Init::kUniformFanIn, kHidden},
        {"4.bias", Shape{kOut}, Init::kUniformFanIn, kHidden},
    };
    params_ = load_parameters(specs, device, options, "mlp");
    for (std::size_t i = 0; i < 6; ++i) w_[i] = params_[i].second.data();
  }

  std::string_view name() const override { return "mlp"; }
  Shape input_shape(std::size_t batch) const override { return Shape{batch, kIn}; }
  Shape output_shape(std::size_t batch) const override { return Shape{batch, kOut}; }

  Tensor forward(const Tensor& x) const override {
    const std::size_t batch = check(x);
    Tensor y = Tensor::empty(device_, output_shape(batch));
    encode(x, y, batch, Keep::kInput);
    return y;
  }

  void forward_into(const Tensor& x, const Tensor& y) const override {
    const std::size_t batch = check(x);
    check_output("mlp", *device_, y, output_shape(batch));
    encode(x, y, batch, Keep::kInputAndOutput);
  }

 private:
  // check(x): x's batch, or Error(kInvalidArgument).
  std::size_t check(const Tensor& x) const {
    const std::size_t batch = x.defined() && x.rank() ? x.dim(0) : 0;
    check_input("mlp", *device_, x, input_shape(batch));
    return batch;
  }

  // encode(x, y, batch, keep): the forward of x into y, one command buffer on the calling
  // thread's stream.
  void encode(const Tensor& x, const Tensor& y, std::size_t batch, Keep keep) const {
    Stream& stream = device_->current_stream();
    const Kernels& k = device_->kernels();
    // Declaration order matters: the Encoder commits before the workspace is freed (in stream
    // order, after the work that uses it).
    Tensor ws = Tensor::empty(device_, Shape{2 * batch * kHidden});
    float* h1 = ws.data();
    float* h2 = h1 + batch * kHidden;
    Encoder enc(stream);
    k.linear(enc, h1, x.data(), w_[0], w_[1], batch, kIn, kHidden, Activation::kRelu);
    k.linear(enc, h2, h1, w_[2], w_[3], batch, kHidden, kHidden, Activation::kRelu);
    k.linear(enc, y.data(), h2, w_[4], w_[5], batch, kHidden, kOut, Activation::kNone);
    // Keep the input and the weights (and forward_into's output) alive until the work has run
    // (Note [Model threading]). These references die on the stream's worker; they are never the
    // device's last one: the calling thread's stream lease holds the device and synchronizes
    // this stream before releasing it.
    if (keep == Keep::kInputAndOutput) {
      enc.defer([keep_input = x, keep_output = y, keep_model = shared_from_this()] {});
    } else {
      enc.defer([keep_input = x, keep_model = shared_from_this()] {});
    }
    enc.commit();
  }

  const float* w_[6] = {};
};

}  // namespace

std::shared_ptr<const Model> make_mlp(const std::shared_ptr<Device>& device,
                                      const ModelOptions& options) {
  return std::make_shared<Mlp>(device, options);
}

}  // namespace tandem::nn::detail
