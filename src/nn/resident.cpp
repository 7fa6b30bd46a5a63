#include "tandem/nn/resident.h"

#include <string>
#include <vector>

#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/kernels.h"
#include "tandem/stream.h"

namespace tandem::nn {

namespace {

const Tensor& find_param(const Model& m, const std::string& name) {
  for (const auto& [n, t] : m.parameters()) {
    if (n == name) return t;
  }
  throw Error(ErrorKind::kInternal, "ResidentModel: model " + std::string(m.name()) +
                                        " has no parameter " + name);
}

// The mlp as a chain: Linear(512,1024) ReLU Linear(1024,1024) ReLU Linear(1024,512).
std::vector<ResidentLayer> chain_of(const Model& m) {
  if (m.name() != "mlp") {
    throw Error(ErrorKind::kInvalidArgument,
                "ResidentModel serves the mlp (a chain of Linear + ReLU) only; model " +
                    std::string(m.name()) + " needs forward() on a stream");
  }
  std::vector<ResidentLayer> layers;
  const char* prefixes[] = {"0.", "2.", "4."};
  for (int l = 0; l < 3; ++l) {
    const std::string weight = std::string(prefixes[l]) + "weight";
    const std::string bias = std::string(prefixes[l]) + "bias";
    const Tensor& w = find_param(m, weight);
    const Tensor& b = find_param(m, bias);
    layers.push_back({w.data(), b.data(), w.dim(1), w.dim(0),
                      l < 2 ? Activation::kRelu : Activation::kNone});
  }
  return layers;
}

}  // namespace

ResidentModel::ResidentModel(std::shared_ptr<const Model> model, const ResidentConfig& config)
    : model_(std::move(model)) {
  if (!model_) throw Error(ErrorKind::kInvalidArgument, "ResidentModel: no model");
  const std::vector<ResidentLayer> layers = chain_of(*model_);
  in_ = layers.front().in;
  out_ = layers.back().out;
  Device& device = *model_->device();
  chain_ = device.kernels().start_resident_chain(device.current_stream(), layers, config);
}

ResidentModel::~ResidentModel() = default;

void ResidentModel::forward(std::span<const float> input, std::span<float> output) {
  if (input.size() != in_ || output.size() != out_) {
    throw Error(ErrorKind::kInvalidArgument,
                "ResidentModel::forward: input of " + std::to_string(input.size()) +
                    " floats and output of " + std::to_string(output.size()) + "; model " +
                    std::string(model_->name()) + " takes one sample of " + std::to_string(in_) +
                    " and gives " + std::to_string(out_));
  }
  chain_->forward(input.data(), output.data());
}

ResidentStats ResidentModel::stats() const { return chain_->stats(); }

}  // namespace tandem::nn
