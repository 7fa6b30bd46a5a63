// cmd_run.cpp — `tandem run`: one forward of a reference model on a safetensors input.
//
//   tandem run --model mlp|encoder [--weights FILE] [--seed N] --input FILE --output FILE
//              [--device D]
// Reads the tensor named `input` (F32, [batch, ...] as the model expects) from --input, runs
// the model's forward on the calling thread's stream of --device (default: TANDEM_BACKEND or the
// best available), and writes the result as tensor `output` to --output (metadata: model).
// Without --weights the model gets deterministic random weights from --seed (default 0).
// Exit codes: 0 written; 1 failed (file, format, shape, device; one line on stderr); 2 usage.
#include <cstdio>
#include <string>

#include "command.h"
#include "parse.h"
#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/nn/models.h"
#include "tandem/nn/safetensors.h"

namespace tandem::cli {
namespace {

int run_main(std::vector<std::string> args) {
  CLI::App app{"Run one forward of a reference model: safetensors `input` in, `output` out."};
  std::string model_name, weights, input, output, device_name;
  std::uint64_t seed = 0;
  app.add_option("--model", model_name, "mlp | encoder")
      ->required()
      ->check(CLI::IsMember({"mlp", "encoder"}));
  app.add_option("--weights", weights,
                 "safetensors file with the model's PyTorch state_dict() (F32); default: random "
                 "weights from --seed");
  app.add_option("--seed", seed, "seed of the random weights when --weights is not given")
      ->default_val(0);
  app.add_option("--input", input, "safetensors file holding tensor `input`")->required();
  app.add_option("--output", output, "safetensors file to write tensor `output` to")->required();
  app.add_option("--device", device_name, "device (cpu, cuda:0, ...); default: TANDEM_BACKEND "
                                          "or the best available");
  if (auto rc = parse(app, args)) return *rc;

  try {
    auto device = device_name.empty() ? Device::get_default() : Device::get(device_name);
    nn::ModelOptions options;
    if (!weights.empty()) options.weights = weights;
    options.seed = seed;
    auto model = nn::load_model(model_name, device, options);

    const nn::SafetensorsFile in = nn::SafetensorsFile::read(input);
    const nn::SafetensorsEntry* entry = in.find("input");
    if (!entry) {
      throw Error(ErrorKind::kFormat, "input file '" + input + "' has no tensor named 'input'");
    }
    const nn::Tensor x = in.to_tensor("input", device);
    const nn::Tensor y = model->forward(x);
    nn::write_safetensors(output, {{"output", y.shape(), y.to_host()}},
                          {{"model", model_name}, {"device", device->name()}});
    return kExitOk;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s error: %s\n", args[0].c_str(),
                 std::string(to_string(e.kind())).c_str(), e.what());
    return e.kind() == ErrorKind::kConfig ? kExitUsage : kExitFailure;
  }
}

}  // namespace

TANDEM_REGISTER_COMMAND(Command{"run", "run one forward of a reference model (mlp, encoder) on a safetensors input", run_main});

}  // namespace tandem::cli
