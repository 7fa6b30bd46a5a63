// command.h — the registry of `tandem` subcommands.
//
// Each subcommand lives in its own cmd_<name>.cpp, compiled straight into the executable, and
// registers itself with TANDEM_REGISTER_COMMAND. main.cpp dispatches on argv[1].
//
// Exit codes shared by every subcommand (see README.md, "CLI"):
//   0  success;  1  the job ran and found a failure;  2  usage error (bad option, bad env value).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace tandem::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct Command {
  std::string name;     // argv[1]
  std::string summary;  // one line for `tandem --help`
  // run(args): args[0] is "tandem <name>", the rest are the subcommand's arguments.
  std::function<int(std::vector<std::string> args)> run;
  bool hidden = false;  // internal subcommands (workloads run by other subcommands)
};

// Registry: filled during static initialisation, read-only afterwards.
std::vector<Command>& commands();

struct Registrar {
  explicit Registrar(Command c) { commands().push_back(std::move(c)); }
};

}  // namespace tandem::cli

#define TANDEM_CLI_CONCAT2(a, b) a##b
#define TANDEM_CLI_CONCAT(a, b) TANDEM_CLI_CONCAT2(a, b)
// TANDEM_REGISTER_COMMAND(Command{...}) at namespace scope in a cmd_*.cpp file.
#define TANDEM_REGISTER_COMMAND(...)                                                     \
  static const ::tandem::cli::Registrar TANDEM_CLI_CONCAT(tandem_command_registrar_, \
                                                          __LINE__)(__VA_ARGS__)
