// resident.h — ResidentModel: a reference model served by a persistent GPU grid, with no driver
// call per forward (Note [Resident serving] in tandem/resident.h).
//
//   auto model = tandem::nn::load_model("mlp", tandem::Device::get("cuda"));
//   tandem::nn::ResidentModel resident(model);          // launches the grid
//   resident.forward(input, output);                    // any thread; one sample each
//
// Threads that call forward() at the same time are served together, as one batch of the grid.
// Supported: the mlp (a chain of Linear + ReLU) on a device whose backend has a resident mode
// (cuda). The grid holds the weights it loaded: the model must not change while it is served
// (tandem models never do; ResidentModel keeps the model alive).
#pragma once

#include <memory>
#include <span>

#include "tandem/nn/models.h"
#include "tandem/resident.h"

namespace tandem::nn {

class ResidentModel {
 public:
  // Error(kInvalidArgument) for a model other than mlp, for a device without a resident mode,
  // or a bad config (see tandem/resident.h); Error(kBackend) when the grid cannot launch.
  explicit ResidentModel(std::shared_ptr<const Model> model, const ResidentConfig& config = {});
  ResidentModel(const ResidentModel&) = delete;
  ResidentModel& operator=(const ResidentModel&) = delete;
  ~ResidentModel();  // stops the grid; no forward() may be running

  // forward(input, output): one sample, host memory. input.size() must be the model's input
  // features (mlp: 512), output.size() its output features (mlp: 512); else
  // Error(kInvalidArgument). Blocks until the output is written. Any number of threads at once.
  void forward(std::span<const float> input, std::span<float> output);

  [[nodiscard]] ResidentStats stats() const;
  [[nodiscard]] const Model& model() const { return *model_; }

 private:
  std::shared_ptr<const Model> model_;
  std::size_t in_ = 0, out_ = 0;
  std::unique_ptr<ResidentChain> chain_;
};

}  // namespace tandem::nn
