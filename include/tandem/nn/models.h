// models.h — the reference models (mlp, encoder) behind one Model interface.
//
//   mlp:     torch.nn.Sequential(Linear(512,1024), ReLU(), Linear(1024,1024), ReLU(),
//            Linear(1024,512)); 2,099,712 parameters. Input [batch, 512] -> [batch, 512].
//   encoder: torch.nn.TransformerEncoder(TransformerEncoderLayer(d_model=256, nhead=4,
//            dim_feedforward=1024, dropout=0, batch_first=True), num_layers=2): post-norm, ReLU,
//            LayerNorm eps 1e-5, no final norm, no mask. Input [batch, 32, 256] -> same shape.
//            (seq may be any length >= 1; 32 is the reference workload.)
//
// Weights carry PyTorch's state_dict() names, so a model exported with
// safetensors (or tests/nn/torch_reference.py) loads here:
//   mlp:     0.weight [1024,512], 0.bias, 2.weight [1024,1024], 2.bias, 4.weight [512,1024], 4.bias
//   encoder: layers.{0,1}.self_attn.in_proj_weight [768,256], .self_attn.in_proj_bias [768],
//            .self_attn.out_proj.weight [256,256], .self_attn.out_proj.bias, .linear1.weight
//            [1024,256], .linear1.bias, .linear2.weight [256,1024], .linear2.bias,
//            .norm1.weight [256], .norm1.bias, .norm2.weight, .norm2.bias
// Loading is strict like load_state_dict(strict=True): a missing or unexpected tensor, a dtype
// other than F32, or a wrong shape is Error(kFormat) naming the tensor, the file and the
// expected value. Without a file, weights are deterministic random values from a seed
// (PyTorch-like uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases; LayerNorm 1/0),
// identical on every platform.
//
// Note [Model threading]
// A Model is immutable after load_model() returns (its weights are uploaded and synchronized),
// so forward() may be called from any number of threads at once on one shared model. Each call
// records its whole forward as ONE command buffer on the calling thread's stream
// (Device::current_stream()) with one workspace allocation, and returns without waiting: the
// output is ready in that stream's order (Tensor::to_host synchronizes). Calls from different
// threads run on different streams, in parallel; the results do not depend on the thread count.
// The recorded work holds references to the input tensor and to the model until it has run, so
// the caller may drop both as soon as forward() returns (an input made on another stream must
// still be complete before forward is called: synchronize that stream or use an Event).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/nn/safetensors.h"
#include "tandem/nn/tensor.h"

namespace tandem::nn {

class Model : public std::enable_shared_from_this<Model> {
 public:
  virtual ~Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // "mlp" or "encoder".
  [[nodiscard]] virtual std::string_view name() const = 0;
  // input_shape(batch): the input forward() takes for `batch` samples ([batch, 512] for mlp,
  // [batch, 32, 256] for encoder); output_shape likewise. Dimension 0 is always the batch.
  [[nodiscard]] virtual Shape input_shape(std::size_t batch) const = 0;
  [[nodiscard]] virtual Shape output_shape(std::size_t batch) const = 0;
  // forward(input): input [batch, ...] (batch >= 1) on this model's device -> output
  // [batch, ...], encoded on the calling thread's stream (Note [Model threading]). Sample i of
  // the output depends only on sample i of the input. Error(kInvalidArgument) for a wrong
  // shape, dtype or device (naming the expected shape).
  [[nodiscard]] virtual Tensor forward(const Tensor& input) const = 0;
  // forward_into(input, output): what forward(input) computes, written into `output` (a float32
  // tensor on this model's device, of the shape forward would return; else
  // Error(kInvalidArgument)), with forward's threading and lifetime rules (the recorded work
  // also keeps `output` alive). For callers that keep a static output, such as a forward
  // replayed as a graph (tandem/graph.h): mlp and encoder write their last layer straight into
  // it (no allocation, no copy); the default runs forward() and copies.
  virtual void forward_into(const Tensor& input, const Tensor& output) const;
  // parameters(): name -> weight, in state_dict order.
  [[nodiscard]] const std::vector<std::pair<std::string, Tensor>>& parameters() const {
    return params_;
  }
  // parameter_count(): total elements of all parameters (mlp: 2,099,712).
  [[nodiscard]] std::size_t parameter_count() const;
  // state_dict(): the weights copied to the host, for write_safetensors. Synchronizes.
  [[nodiscard]] std::vector<HostTensor> state_dict() const;
  [[nodiscard]] const std::shared_ptr<Device>& device() const { return device_; }

 protected:
  explicit Model(std::shared_ptr<Device> device) : device_(std::move(device)) {}
  // param(name): the parameter's tensor. Precondition: it exists (built by the constructor).
  [[nodiscard]] const Tensor& param(std::string_view name) const;

  std::shared_ptr<Device> device_;
  std::vector<std::pair<std::string, Tensor>> params_;
};

struct ModelOptions {
  std::optional<std::string> weights;  // safetensors file; nullopt = random weights from seed
  std::uint64_t seed = 0;              // for random weights
};

// model_names(): {"mlp", "encoder"}.
[[nodiscard]] std::vector<std::string> model_names();
// load_model(name, device, options): builds the model on `device` (weights uploaded on the
// calling thread's stream, which is synchronized before returning). Error(kNotFound) for an
// unknown name (listing the known ones), Error(kIo)/Error(kFormat) for the weights file.
[[nodiscard]] std::shared_ptr<const Model> load_model(std::string_view name,
                                                      const std::shared_ptr<Device>& device,
                                                      const ModelOptions& options = {});

}  // namespace tandem::nn
