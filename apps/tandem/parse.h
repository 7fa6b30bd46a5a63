// parse.h — the one way subcommands parse their options (CLI11), with tandem's error contract:
// a usage error prints ONE line naming the problem to stderr and exits with kExitUsage (2);
// --help prints the help to stdout and exits 0.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "command.h"

namespace tandem::cli {

// parse(app, args): parses args (args[0] is the program name). Returns std::nullopt when the
// subcommand should go on, or the exit code to return at once (help shown, or usage error).
inline std::optional<int> parse(CLI::App& app, const std::vector<std::string>& args) {
  std::vector<std::string> rest(args.rbegin(), args.rend() - 1);  // CLI11 wants them reversed
  try {
    app.parse(rest);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", args[0].c_str(), e.what());
    return kExitUsage;
  }
  return std::nullopt;
}

}  // namespace tandem::cli
