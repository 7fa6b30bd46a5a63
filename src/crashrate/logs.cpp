// logs.cpp — see logs.h.
#include "logs.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "crashrate/error.h"
#include "crashrate/report.h"

namespace tandem::crashrate::detail {

LogKeeper::LogKeeper(const std::optional<std::string>& dir) {
  if (!dir) return;
  std::error_code ec;
  std::filesystem::create_directories(*dir, ec);
  if (ec || !std::filesystem::is_directory(*dir)) {
    throw Error(ErrorKind::kUsage, "--keep-logs '" + *dir + "': cannot create the directory (" +
                                       (ec ? ec.message() : "not a directory") + ")");
  }
  dir_ = *dir;
}

std::optional<std::string> LogKeeper::write(const RunResult& run, const std::string& config,
                                            const std::vector<std::string>& phases,
                                            const std::string& command) {
  if (dir_.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/crashrate-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      error_ = "cannot create a log directory " + templ + ": " + std::strerror(errno) + " (set --keep-logs)";
      return std::nullopt;
    }
    dir_ = templ;
  }
  const std::string path = dir_ + "/" + config + "-" + std::to_string(run.index) + "-" +
                           outcome_name(run.raw_outcome) + ".log";
  std::ostringstream o;
  o << "# crashrate run " << run.index << " of configuration " << config << "\n"
    << "command: " << command << "\n"
    << "CRASHRATE_SEED=" << run.seed << "\n"
    << "outcome: " << outcome_name(run.outcome);
  if (run.filtered) o << " (was " << outcome_name(run.raw_outcome) << ", filtered by --failure/--ignore)";
  o << "\n";
  if (run.signal) o << "signal: " << signal_name(*run.signal) << "\n";
  if (run.exit_code) o << "exit code: " << *run.exit_code << "\n";
  o << "duration: " << run.duration_s << " s\n";
  o << "phase of death: " << (run.phase ? *run.phase : "(none)") << "\n";
  if (run.wrong) o << "wrong: " << *run.wrong << "\n";
  if (!phases.empty()) {
    o << "last phases:";
    for (const auto& p : phases) o << " [" << p << "]";
    o << "\n";
  }
  for (const auto& s : run.stacks) o << "stack of thread " << s.tid << ":\n" << format_stack(s);
  if (!run.stack_note.empty()) o << run.stack_note << "\n";
  o << "---- output (stdout and stderr) ----\n" << run.output;
  std::ofstream f(path, std::ios::binary);
  f << o.str();
  if (!f) {
    error_ = "cannot write " + path + " (disk full? set --keep-logs elsewhere)";
    return std::nullopt;
  }
  return path;
}

}  // namespace tandem::crashrate::detail
