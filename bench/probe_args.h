// probe_args.h — comma-separated command-line lists for the standalone probes (sync_probe,
// resident_probe), which link nothing of tandem.
#pragma once

#include <sstream>
#include <string>
#include <vector>

namespace probe {

// "a,b" -> {"a", "b"}; parse_list: "1,8,16" -> {1, 8, 16} (std::stoi throws on a non-number).
inline std::vector<std::string> parse_words(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}
inline std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  for (const auto& w : parse_words(s)) out.push_back(std::stoi(w));
  return out;
}

}  // namespace probe
