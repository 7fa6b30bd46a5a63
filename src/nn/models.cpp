// models.cpp — the Model base, the model registry, strict weight loading, random init.
#include <cmath>
#include <set>

#include "nn/model_impl.h"
#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/kernels.h"
#include "tandem/stream.h"

namespace tandem::nn {

std::size_t Model::parameter_count() const {
  std::size_t n = 0;
  for (const auto& [name, t] : params_) n += t.numel();
  return n;
}

std::vector<HostTensor> Model::state_dict() const {
  std::vector<HostTensor> out;
  out.reserve(params_.size());
  for (const auto& [name, t] : params_) out.push_back({name, t.shape(), t.to_host()});
  return out;
}

void Model::forward_into(const Tensor& input, const Tensor& output) const {
  const Tensor y = forward(input);
  detail::check_output(name(), *device_, output, y.shape());
  Encoder enc(device_->current_stream());
  device_->kernels().copy(enc, output.data(), y.data(), y.size_bytes());
  // y is freed in stream order after the copy; the output is kept until the copy has run.
  enc.defer([keep_output = output] {});
}

const Tensor& Model::param(std::string_view name) const {
  for (const auto& [n, t] : params_) {
    if (n == name) return t;
  }
  throw Error(ErrorKind::kInternal, "model " + std::string(this->name()) + " has no parameter '" +
                                        std::string(name) + "'");
}

std::vector<std::string> model_names() { return {"mlp", "encoder"}; }

std::shared_ptr<const Model> load_model(std::string_view name,
                                        const std::shared_ptr<Device>& device,
                                        const ModelOptions& options) {
  if (!device) throw Error(ErrorKind::kInvalidArgument, "load_model: no device given");
  if (name == "mlp") return detail::make_mlp(device, options);
  if (name == "encoder") return detail::make_encoder(device, options);
  throw Error(ErrorKind::kNotFound,
              "unknown model '" + std::string(name) + "'; known models: mlp, encoder");
}

namespace detail {

namespace {

// SplitMix64: a tiny, fully specified generator, so random weights are the same everywhere
// (std:: distributions are implementation-defined).
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // uniform in [-1, 1): 24 random bits.
  float symmetric() { return static_cast<float>(next() >> 40) * (2.0f / 16777216.0f) - 1.0f; }
};

std::vector<float> random_values(const ParamSpec& spec, SplitMix64& rng) {
  std::vector<float> v(spec.shape.numel());
  switch (spec.init) {
    case Init::kOnes: std::fill(v.begin(), v.end(), 1.0f); break;
    case Init::kZeros: break;
    case Init::kUniformFanIn: {
      const float bound = 1.0f / std::sqrt(static_cast<float>(spec.fan_in));
      for (auto& x : v) x = rng.symmetric() * bound;
      break;
    }
  }
  return v;
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> load_parameters(const std::vector<ParamSpec>& specs,
                                                            const std::shared_ptr<Device>& device,
                                                            const ModelOptions& options,
                                                            std::string_view model) {
  std::vector<std::pair<std::string, Tensor>> params;
  params.reserve(specs.size());
  if (!options.weights) {
    SplitMix64 rng{options.seed};
    for (const auto& spec : specs) {
      const std::vector<float> v = random_values(spec, rng);
      params.emplace_back(spec.name, Tensor::from_host(device, spec.shape, v));
    }
  } else {
    const SafetensorsFile file = SafetensorsFile::read(*options.weights);
    const std::string where = "weights file '" + *options.weights + "' for model " +
                              std::string(model);
    std::set<std::string_view> expected;
    for (const auto& spec : specs) expected.insert(spec.name);
    for (const auto& e : file.entries()) {
      if (!expected.contains(e.name)) {
        throw Error(ErrorKind::kFormat, where + ": unexpected tensor '" + e.name +
                                            "' (not a parameter of " + std::string(model) +
                                            "; export the model's own state_dict())");
      }
    }
    for (const auto& spec : specs) {
      const SafetensorsEntry* e = file.find(spec.name);
      if (!e) throw Error(ErrorKind::kFormat, where + ": missing tensor '" + spec.name + "'");
      if (e->dtype != "F32") {
        throw Error(ErrorKind::kFormat, where + ": tensor '" + spec.name + "' has dtype " +
                                            e->dtype + "; expected F32 (float32)");
      }
      if (!(e->shape == spec.shape)) {
        throw Error(ErrorKind::kFormat, where + ": tensor '" + spec.name + "' has shape " +
                                            e->shape.to_string() + "; expected " +
                                            spec.shape.to_string());
      }
      params.emplace_back(spec.name, file.to_tensor(spec.name, device));
    }
  }
  device->current_stream().synchronize();  // weights complete before any thread reads them
  return params;
}

namespace {

// mismatch(device, x, expected): why x is not a float32 tensor of shape `expected` (batch >= 1)
// on `device`, or "".
std::string mismatch(const Device& device, const Tensor& x, const Shape& expected) {
  if (!x.defined()) return "an undefined tensor";
  if (&x.device() != &device) {
    return "a tensor on " + x.device().name() + " (the model is on " + device.name() + ")";
  }
  if (x.dtype() != DType::kFloat32) {
    return "a " + std::string(to_string(x.dtype())) + " tensor (float32 expected)";
  }
  if (!(x.shape() == expected) || expected.rank() == 0 || expected[0] == 0) {
    return "shape " + x.shape().to_string() + "; expected " + expected.to_string() +
           " with batch >= 1";
  }
  return "";
}

}  // namespace

void check_input(std::string_view model, const Device& device, const Tensor& x,
                 const Shape& expected) {
  const std::string what = mismatch(device, x, expected);
  if (what.empty()) return;
  throw Error(ErrorKind::kInvalidArgument,
              std::string(model) + ".forward was given " + what);
}

void check_output(std::string_view model, const Device& device, const Tensor& y,
                  const Shape& expected) {
  const std::string what = mismatch(device, y, expected);
  if (what.empty()) return;
  throw Error(ErrorKind::kInvalidArgument,
              std::string(model) + ".forward_into was given as output " + what);
}

}  // namespace detail
}  // namespace tandem::nn
