// test_util.h — helpers shared by the nn tests.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace tandem::nn::test_util {

// random_input(n, seed): n standard-normal floats, the same for the same seed.
inline std::vector<float> random_input(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// unique_temp_path(stem): a path in the temp directory private to this process and the running
// test, so tests run in parallel (ctest -j, several presets at once) never share a file.
inline std::filesystem::path unique_temp_path(const std::string& stem) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = info ? std::string(info->test_suite_name()) + "." + info->name() : "none";
  for (auto& c : test) {
    if (c == '/') c = '_';
  }
  return std::filesystem::temp_directory_path() /
         (stem + "." + std::to_string(::getpid()) + "." + test + ".safetensors");
}

}  // namespace tandem::nn::test_util
