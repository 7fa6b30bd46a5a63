// logs.h — where the logs of failing runs go (private to src/crashrate).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "crashrate/results.h"

namespace tandem::crashrate::detail {

// LogKeeper: writes one file per failing run, `<config>-<index>-<outcome>.log`, into the
// --keep-logs directory, or into a fresh $TMPDIR/crashrate-XXXXXX made at the first failure.
class LogKeeper {
 public:
  // Throws Error(kUsage) when the given directory cannot be created.
  explicit LogKeeper(const std::optional<std::string>& dir);

  // write(run, config, phases, command): the log's path, or std::nullopt (with a note kept in
  // error()) when it cannot be written; a campaign goes on without its logs.
  std::optional<std::string> write(const RunResult& run, const std::string& config,
                                   const std::vector<std::string>& phases,
                                   const std::string& command);
  [[nodiscard]] const std::string& dir() const { return dir_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  std::string dir_;
  std::string error_;
};

}  // namespace tandem::crashrate::detail
