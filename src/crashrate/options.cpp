// options.cpp — parsing configurations and validating a campaign's options (crashrate/options.h).
#include <regex>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <set>
#include <string>

#include "crashrate/error.h"
#include "crashrate/options.h"

namespace tandem::crashrate {
namespace {

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-' ||
         c == '+';
}

bool is_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

Error usage(const std::string& m) { return Error(ErrorKind::kUsage, m); }

bool is_executable_file(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

Configuration parse_configuration(const std::string& spec) {
  Configuration c;
  const auto colon = spec.find(':');
  c.name = spec.substr(0, colon);
  const std::string expected = " (expected NAME:VAR=VALUE[,VAR=VALUE...])";
  if (c.name.empty()) throw usage("--config '" + spec + "': the configuration has no name" + expected);
  for (char ch : c.name) {
    if (!is_name_char(ch)) {
      throw usage("--config '" + spec + "': name '" + c.name +
                  "' may hold only letters, digits and _ . + -" + expected);
    }
  }
  if (colon == std::string::npos) return c;
  const std::string rest = spec.substr(colon + 1);
  if (rest.empty()) return c;
  std::size_t pos = 0;
  while (pos <= rest.size()) {
    const auto comma = rest.find(',', pos);
    const std::string item = rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const auto eq = item.find('=');
    if (eq == std::string::npos) {
      throw usage("--config '" + spec + "': '" + item + "' is not VAR=VALUE" + expected);
    }
    std::string var = item.substr(0, eq);
    if (!is_identifier(var)) {
      throw usage("--config '" + spec + "': '" + var + "' is not a variable name" + expected);
    }
    c.env.emplace_back(std::move(var), item.substr(eq + 1));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return c;
}

std::string validate(const Options& o) {
  if (o.command.empty() || o.command[0].empty()) {
    throw usage("no command to run; give it after '--', e.g. tandem crashrate -n 100 -- ./my_test");
  }
  if (o.runs < 1) throw usage("-n " + std::to_string(o.runs) + ": the number of runs must be at least 1");
  if (o.jobs < 0) {
    throw usage("-j " + std::to_string(o.jobs) + ": the number of jobs must be at least 1");
  }
  if (o.timeout.count() <= 0) {
    throw usage("--timeout " + std::to_string(o.timeout.count()) + "ms: the timeout must be positive");
  }
  std::set<std::string> names;
  for (const auto& c : o.configs) {
    if (!names.insert(c.name).second) {
      throw usage("--config: configuration name '" + c.name + "' is given twice; names must differ");
    }
  }
  for (const auto& [flag, re] : {std::pair{"--expect", &o.expect}, std::pair{"--failure", &o.failure},
                                 std::pair{"--ignore", &o.ignore}}) {
    if (!re->has_value()) continue;
    try {
      std::regex compiled(**re, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw usage(std::string(flag) + " '" + **re + "': not a regular expression (" + e.what() + ")");
    }
  }
  if (o.until_decided) {
    const auto& s = o.sprt;
    if (!(s.odds_ratio > 1) || !std::isfinite(s.odds_ratio)) {
      throw usage("SPRT odds ratio " + std::to_string(s.odds_ratio) + " must be a number above 1");
    }
    if (!(s.alpha > 0 && s.alpha < 1) || !(s.beta > 0 && s.beta < 1)) {
      throw usage("SPRT alpha and beta must lie strictly between 0 and 1");
    }
    if (o.configs.size() < 2) {
      throw usage("--until-decided compares the first two configurations; give at least two --config");
    }
  }
  // Resolve the command the way execvp would, so that a typo fails before anything starts.
  const std::string& cmd = o.command[0];
  if (cmd.find('/') != std::string::npos) {
    if (!is_executable_file(cmd)) {
      throw usage("cannot execute '" + cmd + "': not an executable file (check the path and its x bit)");
    }
    return cmd;
  }
  const char* path_env = std::getenv("PATH");
  const std::string path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  std::size_t pos = 0;
  while (pos <= path.size()) {
    const auto colon = path.find(':', pos);
    std::string dir = path.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + cmd;
    if (is_executable_file(candidate)) return candidate;
    if (colon == std::string::npos) break;
    pos = colon + 1;
  }
  throw usage("cannot execute '" + cmd + "': not found in PATH (give a path, e.g. ./" + cmd + ")");
}

}  // namespace tandem::crashrate
