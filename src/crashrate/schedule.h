// schedule.h — the order of a campaign's runs and their seeds (private to src/crashrate).
//
// Round r holds run r of every configuration, in configuration order: A B C A B C ... so that
// drift of the machine (heat, load, other jobs) reaches every configuration alike. Run seeds come
// from a 63-bit mixer over the schedule seed: below 2^63 (they fit a signed 64-bit integer),
// distinct within a campaign (the mixer is a bijection and its inputs differ), and the same for
// the same --seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tandem::crashrate::detail {

struct RunSpec {
  std::size_t config = 0;
  int index = 0;          // run number within its configuration
  std::size_t order = 0;  // position in the schedule
  std::uint64_t seed = 0;
};

[[nodiscard]] std::uint64_t splitmix64(std::uint64_t x) noexcept;

// make_schedule(configs, runs, seed): configs * runs runs, interleaved as above.
[[nodiscard]] std::vector<RunSpec> make_schedule(std::size_t configs, int runs, std::uint64_t seed);

// draw_seed(): a fresh schedule seed (std::random_device mixed with the clock).
[[nodiscard]] std::uint64_t draw_seed();

}  // namespace tandem::crashrate::detail
