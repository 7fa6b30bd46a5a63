#!/usr/bin/env bash
# scripts/bq_compare.sh BASE_TREE — BatchQueue throughput on the GPU machine: this tree's code next
# to BASE_TREE's (another checkout, e.g. main), built side by side in one lease and run
# alternately, so that ratios compare like with like. Logs: $OUT/log.txt.
# With TN and TB set (paths of prebuilt `tandem` binaries, e.g. built with the cuda preset on the
# development machine, which has nvcc, and carried; LD_LIBRARY_PATH naming their
# libtandem_runtime.so), nothing is built: building both trees there took over 4 minutes.
#   ROUNDS (2): alternating rounds; S (1): seconds per point; STEPS: which blocks to run
#   (default "mlp cb noop i4"; also "cpunoop": the queue with no GPU on the cpu device, `any`
#   clients, I = 8, the host-only ceiling); EXTRA: more bench flags for every cuda point (e.g.
#   EXTRA=--graphs).
set -uo pipefail
OUT=${OUT:-/tmp/bq_compare}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
BASE=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
NEW=$(pwd)
ROUNDS=${ROUNDS:-2}
S=${S:-1}
STEPS=" ${STEPS:-mlp cb noop i4} "
has() { [[ $STEPS == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; nproc; date -u +%T
build() {
  (cd "$1" && cmake --preset cuda -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" \
     >"$OUT/build_$2.txt" 2>&1 && timeout 200 cmake --build build/cuda -j8 --target tandem \
     >>"$OUT/build_$2.txt" 2>&1) || { echo "BUILD FAILED: $2"; grep -E "error" -A5 "$OUT/build_$2.txt" | head -30; }
}
if [[ -z ${TN:-} || -z ${TB:-} ]]; then
  # wait for the two builds only: a bare `wait` in bash >= 5.1 also waits for the `tee` process
  # substitution above, i.e. forever (it hung a whole lease on the GPU machine).
  build "$NEW" new &
  p_new=$!
  build "$BASE" base &
  p_base=$!
  wait "$p_new" "$p_base"
  date -u +%T
  TB=$BASE/build/cuda/apps/tandem/tandem
  TN=$NEW/build/cuda/apps/tandem/tandem
fi
q() {  # q LABEL BINARY ARGS...: one 64-client point (queue + one direct thread at its batch)
  local label=$1 bin=$2; shift 2
  echo "--- $label: $*"
  timeout -k 5 40 "$bin" bench --batching --device cuda --clients 64 --in-flight 16 --max-batch 1024 \
    --seconds "$S" --warmup 0.3 "$@" ${EXTRA:-} | grep -E "^(queue|direct-batch)|%"
}
for r in $(seq "$ROUNDS"); do
  echo "=== round $r ($(date -u +%T))"
  if has mlp; then
    q "base I8 D100    " "$TB" --model mlp --instances 8 --delay-us 100 --modes queue,direct-batch
    q "new  I8 D100    " "$TN" --model mlp --instances 8 --delay-us 100 --modes queue,direct-batch
    q "base I8 D0      " "$TB" --model mlp --instances 8 --modes queue,direct-batch
    q "new  I8 D0      " "$TN" --model mlp --instances 8 --modes queue,direct-batch
  fi
  if has cb; then
    q "base callback   " "$TB" --model mlp --instances 8 --delay-us 100 --modes queue --client callback
    q "new  callback   " "$TN" --model mlp --instances 8 --delay-us 100 --modes queue --client callback
  fi
  if has noop; then
    q "base noop       " "$TB" --model noop --instances 8 --modes queue
    q "new  noop       " "$TN" --model noop --instances 8 --modes queue
  fi
  if has cpunoop; then
    for t in "base:$TB" "new:$TN"; do
      echo "--- ${t%%:*} cpu noop any I8"
      timeout -k 5 40 "${t#*:}" bench --batching --device cpu --model noop --clients 64 \
        --in-flight 16 --max-batch 1024 --instances 8 --client any --modes queue --seconds "$S" \
        --warmup 0.3 | grep -E "^queue"
    done
  fi
  if has i4; then
    q "base I4 D0      " "$TB" --model mlp --instances 4 --modes queue,direct-batch
    q "new  I4 D0      " "$TN" --model mlp --instances 4 --modes queue,direct-batch
  fi
done
if has sweep; then
  echo "=== sweep, this tree ($(date -u +%T))"
  for inst in 4 8 12; do
    for delay in 0 100 200; do
      q "new  I$inst D$delay" "$TN" --model mlp --instances "$inst" --delay-us "$delay" --modes queue,direct-batch
    done
  done
fi
if has perf && command -v perf >/dev/null; then
  for t in "$TB" "$TN" "$TB" "$TN"; do
    echo "--- perf stat $t (noop, I = 8)"
    perf stat -e context-switches,task-clock -- timeout 30 "$t" bench --batching --device cuda \
      --model noop --clients 64 --in-flight 16 --seconds 2 --warmup 0 --modes queue --instances 8 \
      --max-batch 1024 2>&1 | grep -E "^queue|context|task-clock|elapsed"
  done
fi
date -u +%T
