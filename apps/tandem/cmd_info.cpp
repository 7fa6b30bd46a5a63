// cmd_info.cpp — `tandem info`: backends, devices, pool size, lock policy, TANDEM_* in effect.
#include <cstdio>

#include "command.h"
#include "parse.h"
#include "tandem/config.h"
#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem::cli {
namespace {

int run_info(const std::vector<std::string>& args) {
  CLI::App app{"Show the backends compiled in, the devices found, and the configuration in effect."};
  if (auto code = parse(app, args)) return *code;

  std::shared_ptr<Device> device;
  try {
    device = Device::get_default();  // validates the environment first: nothing half-printed
  } catch (const Error& e) {
    std::fprintf(stderr, "tandem info: %s\n", e.what());
    return kExitUsage;
  }
  std::printf("backends compiled in: ");
  const auto backends = Device::backends();
  for (std::size_t i = 0; i < backends.size(); ++i) {
    std::printf("%s%s", i ? ", " : "", backends[i].c_str());
  }
  std::printf("\ndevices found:        ");
  const auto devices = Device::available();
  for (std::size_t i = 0; i < devices.size(); ++i) {
    std::printf("%s%s", i ? ", " : "", devices[i].c_str());
  }
  std::printf("\n");
  std::printf("default device:       %s\n", device->name().c_str());
  std::printf("stream pool:          %d streams (1 default + %d worker), wait %lld ms\n",
              device->streams().size(), device->streams().size() - 1,
              static_cast<long long>(device->config().stream_pool_wait_ms));
  std::printf("encoding lock:        %s\n",
              std::string(to_string(device->encoding_lock_policy())).c_str());
  std::printf("\nenvironment (TANDEM_*):\n");
  for (const auto& v : environment_variables()) {
    std::printf("  %-28s = %-10s (default: %s; allowed: %s)\n", v.name.c_str(),
                v.value.empty() ? "<unset>" : v.value.c_str(), v.default_value.c_str(),
                v.allowed.c_str());
  }
  return kExitOk;
}

TANDEM_REGISTER_COMMAND(Command{"info", "backends, devices, pool size, lock policy, TANDEM_* in effect",
                                run_info});

}  // namespace
}  // namespace tandem::cli
