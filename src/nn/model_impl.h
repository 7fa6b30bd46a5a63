// model_impl.h (private) — what the reference models share: parameter specs, strict loading
// from safetensors or deterministic random initialization, input checks.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "tandem/nn/models.h"

namespace tandem::nn::detail {

// How a parameter is initialized without a weights file.
enum class Init { kUniformFanIn, kOnes, kZeros };

struct ParamSpec {
  std::string name;
  Shape shape;
  Init init = Init::kUniformFanIn;
  std::size_t fan_in = 1;  // for kUniformFanIn: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
};

// load_parameters(specs, device, options, model): the tensors in spec order, from the weights
// file (strict: missing / unexpected / non-F32 / wrong shape is Error(kFormat) naming the tensor)
// or random from options.seed. Uploaded on the calling thread's stream, synchronized.
[[nodiscard]] std::vector<std::pair<std::string, Tensor>> load_parameters(
    const std::vector<ParamSpec>& specs, const std::shared_ptr<Device>& device,
    const ModelOptions& options, std::string_view model);

// check_input(model, x, expected): Error(kInvalidArgument) unless x is a defined float32 tensor
// on `device` whose shape equals `expected` (the caller fills the batch from x), batch >= 1.
void check_input(std::string_view model, const Device& device, const Tensor& x,
                 const Shape& expected);
// check_output(model, device, y, expected): the same for forward_into's output.
void check_output(std::string_view model, const Device& device, const Tensor& y,
                  const Shape& expected);

// What a model's recorded work keeps alive besides the input and the model (forward_into: the
// caller's output too; forward: nothing, its output is the caller's).
enum class Keep { kInput, kInputAndOutput };

[[nodiscard]] std::shared_ptr<const Model> make_mlp(const std::shared_ptr<Device>& device,
                                                    const ModelOptions& options);
[[nodiscard]] std::shared_ptr<const Model> make_encoder(const std::shared_ptr<Device>& device,
                                                        const ModelOptions& options);

}  // namespace tandem::nn::detail
