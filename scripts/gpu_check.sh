#!/usr/bin/env bash
# scripts/gpu_check.sh — everything the cuda backend needs a GPU for, in one go (one device
# lease): build the `cuda` preset, run every test (the GPU ones for real), compute-sanitizer
# memcheck/racecheck/synccheck on the GPU tests, then the benchmarks side by side.
#   scripts/gpu_check.sh [tests] [sanitize] [bench] [other]   (default: tests sanitize bench)
# logs under $OUT (default /tmp/gpu_check). `other` also runs the non-GPU tests (CI does).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
modes=" ${*:-tests sanitize bench} "
has() { [[ $modes == *" $1 "* ]]; }
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0
section() { echo; echo "=== $* ($(date +%T))"; }

section machine
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
nvcc --version | tail -1; cmake --version | head -1; g++ --version | head -1; nproc

section configure
nvcc_path=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
gen=(); command -v ninja >/dev/null || gen=(-G "Unix Makefiles")
if ! cmake --preset cuda "${gen[@]}" -DCMAKE_CUDA_COMPILER="$nvcc_path" >"$OUT/configure.log" 2>&1; then
  tail -40 "$OUT/configure.log"; exit 1
fi
grep -E "OpenBLAS|CUDA|libdw" "$OUT/configure.log" | head
section build
targets=(--target tandem cuda_gpu_tests cuda_unit_tests)
has other && targets=()
if ! cmake --build build/cuda -j"$(nproc)" "${targets[@]}" >"$OUT/build.log" 2>&1; then
  grep -E "error|Error" -A6 "$OUT/build.log" | head -80; exit 1
fi
echo built
gpu_tests=build/cuda/tests/cuda/cuda_gpu_tests

if has tests; then
  section "GPU tests (one process)"
  build/cuda/tests/cuda/cuda_unit_tests 2>&1 | tail -1
  timeout 300 "$gpu_tests" 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |FAILED|Failure|rror|Expected|Which is|actual|seed" | head -60
  grep -E "^\[ +OK \]" "$OUT/gpu_tests.log" | sed 's/^\[ *OK *\] //' | tr '\n' ' ' | cut -c1-3000; echo
fi
if has other; then
  section "all other tests (ctest -LE gpu)"
  timeout 300 ctest --test-dir build/cuda -LE gpu -j8 --output-on-failure >"$OUT/ctest_other.log" 2>&1
  tail -6 "$OUT/ctest_other.log"; grep -E "\(Failed\)|\(Timeout\)" "$OUT/ctest_other.log" | head -20
fi
if has sanitize; then
  section "compute-sanitizer"
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  common='--error-exitcode=9 --print-limit 20'
  filter_mem='-*OutOfMemory*:*Churn*/4:*Seed*:*OneThreadCaptures*'
  timeout 150 "$cs" --tool memcheck $common "$gpu_tests" --gtest_filter="$filter_mem" >"$OUT/memcheck.log" 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|========= (Invalid|Program hit)" "$OUT/memcheck.log" | head -10
  timeout 100 "$cs" --tool racecheck $common "$gpu_tests" --gtest_filter='CudaNnKernels*:*CudaKernelsTest*:CudaGraphs.Replays*' >"$OUT/racecheck.log" 2>&1
  echo "racecheck rc=$?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|Race" "$OUT/racecheck.log" | head -10
  timeout 60 "$cs" --tool synccheck $common "$gpu_tests" --gtest_filter='CudaNnKernels*' >"$OUT/synccheck.log" 2>&1
  echo "synccheck rc=$?"; grep -E "ERROR SUMMARY" "$OUT/synccheck.log" | head -3
fi

if has bench; then
  section benchmarks
  [[ -x scripts/cuda_bench.sh ]] && timeout 400 scripts/cuda_bench.sh 2>&1 | tee "$OUT/bench.log"
fi
section done
