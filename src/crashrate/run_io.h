// run_io.h — what a run writes: its output (kept within a budget) and its phase protocol lines
// (private to src/crashrate). Not thread-safe; one per run.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace tandem::crashrate::detail {

// OutputBuffer: keeps the first and the last limit/2 bytes of a stream (sanitizer reports come
// at the end) and counts what fell between.
class OutputBuffer {
 public:
  explicit OutputBuffer(std::size_t limit) : limit_(limit) {}
  void append(const char* data, std::size_t n);
  // text(): head, a "[... N bytes dropped ...]" line if any were, then tail.
  [[nodiscard]] std::string text() const;

 private:
  std::size_t limit_;
  std::string head_, tail_;
  std::size_t dropped_ = 0;
};

// PhaseParser: splits the phase pipe's bytes into lines `phase NAME` and `wrong DETAIL`.
// Other lines are counted and otherwise ignored. A last line without '\n' counts at finish().
class PhaseParser {
 public:
  static constexpr std::size_t kMaxHistory = 64;  // phases remembered for the log (the last ones)

  void feed(const char* data, std::size_t n);
  void finish();

  [[nodiscard]] const std::optional<std::string>& last_phase() const { return last_phase_; }
  [[nodiscard]] const std::optional<std::string>& wrong() const { return wrong_; }
  [[nodiscard]] const std::vector<std::string>& history() const { return history_; }
  [[nodiscard]] std::size_t phase_count() const { return phase_count_; }
  [[nodiscard]] std::size_t bad_lines() const { return bad_lines_; }

 private:
  void line(const std::string& l);
  std::string partial_;
  std::optional<std::string> last_phase_, wrong_;
  std::vector<std::string> history_;
  std::size_t phase_count_ = 0, bad_lines_ = 0;
};

}  // namespace tandem::crashrate::detail
