// bench_batching.h — `tandem bench --batching`: dynamic batching against threads calling the
// model directly (bench_batching.cpp).
#pragma once

#include <string>
#include <vector>

namespace tandem::cli {

// run_batching_bench(args): args[0] is the program name, the rest the options (without
// --batching). Returns the exit code.
int run_batching_bench(const std::vector<std::string>& args);

}  // namespace tandem::cli
