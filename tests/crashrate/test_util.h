// test_util.h — helpers shared by the crashrate tests that run processes.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace crashrate_test {

// The workload's own draw (workload.cpp): whether the run with this seed misbehaves.
inline bool misbehaves(std::uint64_t seed, double prob) {
  std::uint64_t x = seed + 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return static_cast<double>(x >> 11) * 0x1.0p-53 < prob;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

inline std::vector<int> read_pids(const std::string& path) {
  std::vector<int> pids;
  std::ifstream f(path);
  int p;
  while (f >> p) pids.push_back(p);
  return pids;
}

// alive(pid): the process exists and is not a zombie.
inline bool alive(int pid) {
  if (::kill(pid, 0) != 0) return false;
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

// TempDir: a fresh directory under /tmp, removed at the end.
class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/crashrate-test-XXXXXX";
    path_ = ::mkdtemp(t);
  }
  ~TempDir() { [[maybe_unused]] int r = std::system(("rm -rf '" + path_ + "'").c_str()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace crashrate_test
