// error.h — the error type of the crashrate library.
//
// crashrate is independent of the tandem runtime (docs/crashrate.md), so it has its own small
// error family with a stable kind, mirroring tandem::Error: the CLI maps kUsage to exit 2.
#pragma once

#include <stdexcept>
#include <string>

namespace tandem::crashrate {

enum class ErrorKind {
  kUsage,   // bad options or configuration: nothing was started (CLI exit 2)
  kSystem,  // the operating system refused something the harness needs (pipe, fork, ...)
};

// Error: what failed, with the values, and what to do, in one line.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace tandem::crashrate
