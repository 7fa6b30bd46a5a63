// main.cpp — `tandem SUBCOMMAND ...`: dispatches to the registered subcommands (command.h).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "command.h"

namespace tandem::cli {

std::vector<Command>& commands() {
  static std::vector<Command> registry;  // filled before main(); never destroyed before exit
  return registry;
}

namespace {

void print_usage(std::FILE* out) {
  std::fprintf(out, "tandem: many threads, one GPU runtime.\n\nUsage: tandem SUBCOMMAND [OPTIONS]\n\n"
                    "Subcommands:\n");
  auto cmds = commands();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (const auto& c : cmds) {
    if (!c.hidden) std::fprintf(out, "  %-14s %s\n", c.name.c_str(), c.summary.c_str());
  }
  std::fprintf(out, "\nRun `tandem SUBCOMMAND --help` for a subcommand's options.\n");
}

}  // namespace
}  // namespace tandem::cli

int main(int argc, char** argv) {
  using namespace tandem::cli;
  if (argc < 2) {
    print_usage(stderr);
    return kExitUsage;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(stdout);
    return kExitOk;
  }
  for (const auto& c : commands()) {
    if (c.name == name) {
      std::vector<std::string> args{"tandem " + name};
      for (int i = 2; i < argc; ++i) args.emplace_back(argv[i]);
      return c.run(std::move(args));
    }
  }
  std::vector<std::string> names;
  for (const auto& c : commands()) {
    if (!c.hidden) names.push_back(c.name);
  }
  std::sort(names.begin(), names.end());
  std::string known;
  for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
  std::fprintf(stderr, "tandem: unknown subcommand '%s'; expected one of: %s\n", name.c_str(),
               known.c_str());
  return kExitUsage;
}
