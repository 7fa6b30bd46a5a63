// run_io.cpp — see run_io.h.
#include "run_io.h"

namespace tandem::crashrate::detail {

void OutputBuffer::append(const char* data, std::size_t n) {
  const std::size_t half = limit_ / 2;
  if (head_.size() < half) {
    const std::size_t take = std::min(n, half - head_.size());
    head_.append(data, take);
    data += take;
    n -= take;
  }
  if (n == 0) return;
  tail_.append(data, n);
  if (tail_.size() > 2 * half + 4096) {  // amortized: trim in bulk
    const std::size_t cut = tail_.size() - half;
    dropped_ += cut;
    tail_.erase(0, cut);
  }
}

std::string OutputBuffer::text() const {
  const std::size_t half = limit_ / 2;
  std::string out = head_;
  std::size_t dropped = dropped_;
  std::string_view tail(tail_);
  if (tail.size() > half) {
    dropped += tail.size() - half;
    tail.remove_prefix(tail.size() - half);
  }
  if (dropped > 0) {
    if (!out.empty() && out.back() != '\n') out += '\n';
    out += "[... crashrate dropped " + std::to_string(dropped) + " bytes of output ...]\n";
  }
  out += tail;
  return out;
}

void PhaseParser::feed(const char* data, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (data[i] == '\n') {
      line(partial_);
      partial_.clear();
    } else if (partial_.size() < 4096) {
      partial_ += data[i];
    }
  }
}

void PhaseParser::finish() {
  if (!partial_.empty()) line(partial_);
  partial_.clear();
}

void PhaseParser::line(const std::string& l) {
  if (l.rfind("phase ", 0) == 0) {
    last_phase_ = l.substr(6);
    ++phase_count_;
    if (history_.size() == kMaxHistory) history_.erase(history_.begin());
    history_.push_back(*last_phase_);
  } else if (l.rfind("wrong", 0) == 0 && (l.size() == 5 || l[5] == ' ')) {
    if (!wrong_) wrong_ = l.size() > 6 ? l.substr(6) : std::string();
  } else if (!l.empty()) {
    ++bad_lines_;
  }
}

}  // namespace tandem::crashrate::detail
