// schedule.cpp — see schedule.h.
#include "schedule.h"

#include <chrono>
#include <random>

namespace tandem::crashrate::detail {

std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

namespace {

// mix63(x): a bijection of [0, 2^63) (xor-shifts and odd multipliers modulo 2^63), so that run
// seeds fit a signed 64-bit integer (shells, Python, Java) and stay distinct.
std::uint64_t mix63(std::uint64_t x) noexcept {
  constexpr std::uint64_t kMask = (1ULL << 63) - 1;
  x &= kMask;
  x ^= x >> 30;
  x = (x * 0xbf58476d1ce4e5b9ULL) & kMask;
  x ^= x >> 27;
  x = (x * 0x94d049bb133111ebULL) & kMask;
  x ^= x >> 31;
  return x;
}

}  // namespace

std::vector<RunSpec> make_schedule(std::size_t configs, int runs, std::uint64_t seed) {
  std::vector<RunSpec> s;
  s.reserve(configs * static_cast<std::size_t>(runs));
  for (int r = 0; r < runs; ++r) {
    for (std::size_t c = 0; c < configs; ++c) {
      const std::size_t order = s.size();
      // Distinct states (seed + order*gamma mod 2^63, gamma odd) give distinct outputs of the
      // bijective mixer.
      s.push_back({c, r, order, mix63(seed + order * 0x9e3779b97f4a7c15ULL)});
    }
  }
  return s;
}

std::uint64_t draw_seed() {
  std::random_device rd;
  const std::uint64_t a = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  const auto t = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return splitmix64(a ^ t);
}

}  // namespace tandem::crashrate::detail
