#!/usr/bin/env bash
# scripts/cuda_targets.sh — the open targets of issues 3 and 4 measured side by side in one run on
# the GPU machine (one device lease; docs/benchmarks.md records the output):
#   build -> the new GPU tests -> batching (issue 4) -> plain cuBLASLt vs tandem at batch
#   1024/4096 (issue 3) -> batch-1 MLP with and without PDL, empty-kernel ceiling, PyTorch ->
#   encoder table -> all GPU tests -> compute-sanitizer on the changed kernels.
#   Step `arena` (not in the default list): graph-owned memory, its tests, memcheck and the
#   batch-1 graph bench next to the empty-kernel ceiling. Steps `graphbatch` (graph batching
#   against plain batches, alternating; GB_ROUNDS, GB_CFGS, GB_QUICK narrow it) and `bqsan`
#   (memcheck on the BatchQueue GPU tests), not in the default list either. Step `resident`
#   (bench/resident_probe.cu: driver-free batch-1 forwards from persistent grids, next to
#   tandem's graph path and the empty-kernel ceiling, two rounds), not in the default list. Step
#   `residentserve` (tandem's resident mode, tandem/nn/resident.h: its GPU tests, then `tandem
#   bench --resident` next to the graph path, the empty-kernel ceiling and PyTorch eager).
# Step `fused` (not in the default list): the fused encoder's tests, then the encoder at batch 1
# and 2 with TANDEM_CUDA_FUSED_ENCODER=0 and 1 alternating, the ceiling and PyTorch eager.
# Step `phases` (not in the default list): a second build (build/cuda-clocks) with the fused
# encoder's phase clocks (-DTANDEM_ENCODER_PHASE_CLOCKS), and its table at 1 and 8 threads.
# Step `mma` (not in the default list): the 3xTF32 linear (Note [MMA linear]): its tests under
# memcheck, racecheck and synccheck, the MLP and encoder forwards with TANDEM_CUDA_MMA_LINEAR=0
# and 1 alternating, then the sharded queue A/B and the issue's command with each.
# NEWTESTS=<gtest filter> picks the 'newtests' step's tests. Each step has its own timeout, so one hang loses only that step. Logs: $OUT/log.txt, JSON
# records in $OUT. Steps: scripts/cuda_targets.sh [step...] (default: all).
set -uo pipefail
OUT=${OUT:-/tmp/cuda_targets}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
steps=" ${*:-build newtests batching batchingcb blas batch1 encoder tests sanitize} "
has() { [[ $steps == *" $1 "* ]]; }
section() { echo; echo "=== $* ($(date +%T))"; }
T=build/cuda/apps/tandem/tandem
S=${SECONDS_PER_POINT:-1}
run() { echo "+ $*"; timeout -k 5 "$@"; local rc=$?; [[ $rc != 0 ]] && echo "(rc=$rc)"; return 0; }
b() { run 60 "$T" bench --device cuda --seconds "$S" "$@" | grep -v "^efficiency ="; }

section machine
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
nproc; python3 -c 'import torch; print("torch", torch.__version__)' 2>/dev/null

if has build; then
  section build
  gen=(); command -v ninja >/dev/null || gen=(-G "Unix Makefiles")
  cmake --preset cuda "${gen[@]}" -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" \
    >"$OUT/build.txt" 2>&1 || { tail -30 "$OUT/build.txt"; exit 1; }
  if ! timeout 400 cmake --build build/cuda -j"$(nproc)" --target tandem cuda_gpu_tests cuda_unit_tests \
      cublas_mlp sync_probe resident_probe cuda_fault_tests >>"$OUT/build.txt" 2>&1; then
    grep -E "error|Error" -A6 "$OUT/build.txt" | head -60; exit 1
  fi
  echo built
fi
G=build/cuda/tests/cuda/cuda_gpu_tests

if has newtests; then
  section "new GPU tests"
  run 120 "$G" --gtest_filter="${NEWTESTS:-CudaHostBuffer*:CudaPdl*:CudaBatchQueue*:CudaModels*}" 2>&1 | grep -E "^\[|seed|Failure|Expected|Which|rror" | head -40
fi

if has mma; then
  section "3xTF32 linear (Note [MMA linear]): tests, sanitizers, forward and queue A/B"
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  run 120 "$G" --gtest_filter='CudaNnKernels.Linear*:CudaNnKernels.MmaLinear*:CudaNnKernels.ClusterLinear*:CudaModels*' 2>&1 | grep -E "^\[  (PASSED|FAILED)|Failure" | head
  for tool in memcheck racecheck synccheck; do
    run 200 "$cs" --tool $tool --error-exitcode=9 --print-limit 20 "$G" --gtest_filter='CudaNnKernels.MmaLinear*:CudaNnKernels.ClusterLinear*' 2>&1 | grep -E "SUMMARY|PASSED|FAILED" | head -3
  done
  for r in 1 2; do for m in 0 1; do
    echo "-- round $r, TANDEM_CUDA_MMA_LINEAR=$m"
    for bt in 24 64 96 128 256; do TANDEM_CUDA_MMA_LINEAR=$m b --model mlp --graphs --batch $bt --threads 1,8 --policies none | grep -E "^none"; done
    for bt in 4 8; do TANDEM_CUDA_MMA_LINEAR=$m b --model encoder --graphs --batch $bt --threads 1,8 --policies none | grep -E "^none"; done
  done; done
  q="--batching --clients 64 --in-flight 16 --max-batch 1024 --seconds $S --warmup 0.5 --client any --device cuda --model mlp --graphs --modes queue --instances 8 --shards 4"
  for r in 1 2; do for m in 0 1; do
    echo "-- round $r, TANDEM_CUDA_MMA_LINEAR=$m, D = 0 and 50 us"
    TANDEM_CUDA_MMA_LINEAR=$m run 60 "$T" bench $q | grep -E "^queue|\[queue"
    TANDEM_CUDA_MMA_LINEAR=$m run 60 "$T" bench $q --delay-us 50 --preferred-step 32 | grep -E "^queue|\[queue"
  done; done
  for m in 0 1; do
    echo "-- the issue's command, TANDEM_CUDA_MMA_LINEAR=$m"
    TANDEM_CUDA_MMA_LINEAR=$m run 120 "$T" bench --batching --device cuda --model mlp --graphs --in-flight 16 --max-batch 1024 --instances 8 --shards 4 --delay-us 50 --preferred-step 32 --seconds "$S" --warmup 0.5 --json "$OUT/issue4_mma$m.json" | grep -vE "^\s*\[queue"
  done
fi

if has batching; then
  section "batching (issue 4)"
  bq() { run 60 "$T" bench --batching --device cuda --in-flight 16 --max-batch 1024 --seconds "$S" --warmup 0.3 "$@"; }
  bq --model noop --instances 8 --clients 1,8,64,256 --modes queue,direct-batch --json "$OUT/batching_noop.json"
  echo "--- the issue's command (4 instances, no delay)"
  bq --model mlp --instances 4 --clients 1,8,64,256 --json "$OUT/batching_cuda.json"
  echo "--- 8 instances, max_queue_delay 100 us"
  bq --model mlp --instances 8 --delay-us 100 --clients 1,8,64,256 --json "$OUT/batching_cuda_i8d100.json"
  echo "--- sharded (Note [Batch queue shards]): 8 instances in 4 shards, graphs, any clients"
  bq --model mlp --graphs --instances 8 --shards 4 --client any --clients 1,8,64,256 --json "$OUT/batching_cuda_shards.json"
  bq --model mlp --graphs --instances 8 --shards 4 --client any --delay-us 50 --preferred-step 32 --clients 64 --modes queue,direct-batch | grep -E "^(queue|direct-batch)|%"
  echo "--- sweep at 64 clients: instances x max_queue_delay"
  for inst in 4 8 12; do
    for delay in 0 100 200; do
      echo "instances $inst delay_us $delay"
      bq --model mlp --instances "$inst" --delay-us "$delay" --clients 64 --modes queue,direct-batch | grep -E "^(queue|direct-batch)|%"
    done
  done
  echo "--- TF32, 64 clients, instances 8, delay 100 us"
  TANDEM_CUDA_TF32=1 bq --model mlp --instances 8 --delay-us 100 --clients 64 --modes queue,direct-batch | grep -E "^(queue|direct-batch)|%"
fi

if has batchingcb; then
  section "batching (issue 4), callback clients (--client callback)"
  bc() { run 60 "$T" bench --batching --device cuda --client callback --in-flight 16 --max-batch 1024 --seconds "$S" --warmup 0.3 "$@"; }
  bc --model noop --instances 8 --clients 1,8,64,256 --modes queue,direct-batch --json "$OUT/batching_cb_noop.json"
  echo "--- the issue's command (4 instances, no delay)"
  bc --model mlp --instances 4 --clients 1,8,64,256 --json "$OUT/batching_cb_cuda.json"
  echo "--- sweep at 64 clients: instances x max_queue_delay"
  for inst in 4 8 12; do
    for delay in 0 100; do
      echo "instances $inst delay_us $delay"
      bc --model mlp --instances "$inst" --delay-us "$delay" --clients 64 --modes queue,direct-batch | grep -E "^(queue|direct-batch)|%"
    done
  done
  echo "--- futures again, same run (I = 8, D = 100 us)"
  run 60 "$T" bench --batching --device cuda --in-flight 16 --max-batch 1024 --seconds "$S" --warmup 0.3 --model mlp --instances 8 --delay-us 100 --clients 64 --modes queue,direct-batch | grep -E "^(queue|direct-batch)|%"
fi

if has graphbatch; then
  section "graph batching (BatchQueueOptions::graphs) against plain batches (issue 4), alternating"
  gq() { run 60 "$T" bench --batching --device cuda --in-flight 16 --max-batch 1024 --seconds "$S" --warmup 0.3 "$@"; }
  if [[ -z ${GB_QUICK:-} ]]; then
    echo "--- the issue's command (4 instances, no delay), graphs on"
    gq --model mlp --instances 4 --clients 1,8,64,256 --graphs --json "$OUT/batching_graphs.json"
  fi
  # GB_CFGS="I D,I D,...", GB_ROUNDS=N, GB_QUICK=1 (skip the issue's command) narrow the step.
  cfgs=("4 0" "8 0" "8 100" "2 0")
  [[ -n ${GB_CFGS:-} ]] && IFS=, read -ra cfgs <<<"$GB_CFGS"
  for round in $(seq "${GB_ROUNDS:-2}"); do
    for cfg in "${cfgs[@]}"; do
      read -r inst delay <<<"$cfg"
      for client in future callback; do
        for g in plain graphs; do
          flag=(); [[ $g == graphs ]] && flag=(--graphs)
          echo "round $round: instances $inst delay_us $delay client $client $g"
          gq --model mlp --instances "$inst" --delay-us "$delay" --clients 64 --client "$client" "${flag[@]}" \
            --modes queue,direct-batch 2>&1 | grep -E "^(queue|direct-batch)|%|\[queue"
        done
      done
    done
  done
  echo "--- noop model (the queue's own cost), 8 instances"
  for g in plain graphs; do
    flag=(); [[ $g == graphs ]] && flag=(--graphs)
    echo "noop $g"; gq --model noop --instances 8 --clients 64 --modes queue "${flag[@]}" 2>&1 | grep -E "^queue|\[queue"
  done
fi

if has blas; then
  section "batched MLP: plain cuBLASLt vs tandem (issue 3), two rounds"
  for round in 1 2; do
    run 30 build/cuda/bench/cublas_mlp --batch 1024,4096 --seconds "$S"
    b --model mlp --batch 1024 --threads 1 --policies none
    b --model mlp --batch 4096 --threads 1 --policies none
    run 30 build/cuda/bench/cublas_mlp --batch 1024,4096 --seconds "$S" --tf32
    TANDEM_CUDA_TF32=1 b --model mlp --batch 1024 --threads 1 --policies none
    TANDEM_CUDA_TF32=1 b --model mlp --batch 4096 --threads 1 --policies none
    echo "--- with autotuning (TANDEM_CUDA_AUTOTUNE=1, opt-in)"
    TANDEM_CUDA_AUTOTUNE=1 TANDEM_CUDA_TF32=1 b --model mlp --batch 1024 --threads 1 --policies none
    TANDEM_CUDA_AUTOTUNE=1 TANDEM_CUDA_TF32=1 b --model mlp --batch 4096 --threads 1 --policies none
    TANDEM_CUDA_TF32=1 b --model mlp --batch 1024 --graphs --threads 1 --policies none
    b --model mlp --batch 1024 --graphs --threads 1 --policies none
  done
fi

if has tf32; then
  section "batched MLP TF32 (issue 3): cuBLASLt vs tandem (heuristic, autotuned), three alternating rounds, 2 s points"
  for round in 1 2 3; do
    run 60 build/cuda/bench/cublas_mlp --batch 1024,4096 --seconds 2 --tf32 | grep -E "^(1024|4096)"
    for bs in 1024 4096; do
      echo "tandem $bs heuristic / autotuned:"
      TANDEM_CUDA_TF32=1 run 30 "$T" bench --device cuda --seconds 2 --model mlp --batch $bs --threads 1 --policies none | grep -E "^none"
      TANDEM_CUDA_AUTOTUNE=1 TANDEM_CUDA_TF32=1 run 30 "$T" bench --device cuda --seconds 2 --model mlp --batch $bs --threads 1 --policies none | grep -E "^none"
    done
  done
fi

if has batch1; then
  section "batch 1 MLP (issue 3): empty-kernel ceiling, graphs with and without PDL, PyTorch"
  b --model empty --threads 1,8,16 --policies none,global --json "$OUT/t_empty.json"
  b --model mlp --batch 1 --graphs --threads 1,8,16 --policies none,global --json "$OUT/t_mlp1g.json"
  TANDEM_CUDA_PDL=0 b --model mlp --batch 1 --graphs --threads 1,8,16 --policies none
  b --model mlp --batch 1 --threads 1,8 --policies none
  TANDEM_CUDA_PDL=0 b --model mlp --batch 1 --threads 1,8 --policies none
  run 60 python3 bench/torch_reference.py --model mlp --batch 1 --threads 1,8,16 --modes eager,graph --seconds "$S"
  b --model empty --threads 8 --policies none
  b --model mlp --batch 1 --graphs --threads 8 --policies none
fi

if has sync; then
  section "how a thread waits for tiny GPU work (issue 3 scaling): sync_probe"
  P=build/cuda/bench/sync_probe
  run 120 "$P" --threads 1,8,16 --seconds 0.5
  echo "--- cudaDeviceScheduleSpin"; run 60 "$P" --threads 1,8,16 --seconds 0.5 --waits stream,flag --schedule spin
  echo "--- cudaDeviceScheduleYield"; run 60 "$P" --threads 1,8,16 --seconds 0.5 --waits stream,flag --schedule yield
  for c in 1 32; do
    echo "--- CUDA_DEVICE_MAX_CONNECTIONS=$c"
    CUDA_DEVICE_MAX_CONNECTIONS=$c run 60 "$P" --threads 1,8,16 --seconds 0.5 --waits stream,flag
    CUDA_DEVICE_MAX_CONNECTIONS=$c b --model mlp --batch 1 --graphs --threads 1,8,16 --policies none
  done
  echo "--- default connections, tandem, same run"
  b --model empty --threads 1,8,16 --policies none
  b --model mlp --batch 1 --graphs --threads 1,8,16 --policies none
fi

if has resident; then
  section "driver-free batch-1 forwards (issue 3 scaling): resident_probe, two rounds"
  P=build/cuda/bench/resident_probe
  for round in 1 2; do
    echo "--- round $round: tandem graph MLP, empty kernel, sync_probe flag"
    b --model mlp --batch 1 --graphs --threads 1,8,16 --policies none
    b --model empty --threads 1,8,16 --policies none
    run 60 build/cuda/bench/sync_probe --threads 1,8,16 --seconds 0.5 --waits flag
    echo "--- resident: round trip only, then the MLP at 16 and 8 blocks a grid, then 128 blocks"
    run 60 "$P" --threads 1,8,16 --blocks 1 --layers 0 --seconds 0.5
    run 60 "$P" --threads 1,8 --blocks 16 --seconds 0.5
    run 60 "$P" --threads 1,16 --blocks 8 --seconds 0.5
    run 60 "$P" --threads 1 --blocks 128 --block-threads 128 --seconds 0.5
  done
fi

if has residentserve; then
  section "resident serving (issue 3): tests, then tandem bench --resident next to the graph path, two rounds"
  run 300 "$G" --gtest_filter='*CudaResident*' 2>&1 | grep -E "^\[|blocks|threads,|launches|layer|Failure|Expected|Which|rror|thread " | head -150
  for round in $(seq 1 "${ROUNDS:-2}"); do
    echo "--- round $round"
    b --model mlp --batch 1 --resident --threads 1,2,4,8,16,32,64 --policies none --json "$OUT/resident_$round.json"
    b --model mlp --batch 1 --graphs --threads 1,8,16 --policies none,global --json "$OUT/resident_graph_$round.json"
    b --model empty --threads 1,8,16 --policies none --json "$OUT/resident_empty_$round.json"
  done
  run 60 python3 bench/torch_reference.py --model mlp --batch 1 --threads 1,8 --modes eager --seconds "$S"
  echo "--- compute-sanitizer memcheck on two resident tests, racecheck on one"
  run 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$G" \
    --gtest_filter='CudaResident.MatchesTheStreamPathOneThread:CudaResident.BadInputIsAClearError' 2>&1 | tail -6
  run 200 compute-sanitizer --tool racecheck --error-exitcode 9 "$G" \
    --gtest_filter='CudaResident.MatchesTheStreamPathOneThread' 2>&1 | tail -12
fi

if has signal; then
  section "graph completion signal (issue 3): TANDEM_CUDA_GRAPH_SIGNAL 1 vs 0, same build, two rounds"
  for round in 1 2; do
    b --model empty --threads 1,8,16 --policies none --json "$OUT/signal_empty_$round.json"
    b --model empty --graphs --threads 1,8,16 --policies none
    TANDEM_CUDA_GRAPH_SIGNAL=0 b --model empty --graphs --threads 1,8,16 --policies none
    b --model mlp --batch 1 --graphs --threads 1,8,16 --policies none,stream,global --json "$OUT/signal_mlp_$round.json"
    TANDEM_CUDA_GRAPH_SIGNAL=0 b --model mlp --batch 1 --graphs --threads 1,8,16 --policies none
  done
  run 60 python3 bench/torch_reference.py --model mlp --batch 1 --threads 1,8 --modes eager --seconds "$S"
  echo "--- eager (encoders only), the encoding-lock policies"
  b --model mlp --batch 1 --threads 1,8 --policies none,global
  b --model empty --threads 8 --policies none,global
  b --model encoder --batch 1 --graphs --threads 1,8 --policies none
  TANDEM_CUDA_GRAPH_SIGNAL=0 b --model encoder --batch 1 --graphs --threads 1,8 --policies none
fi

if has signalsan; then
  section "compute-sanitizer memcheck and racecheck on the graph signal tests"
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  run 240 "$cs" --tool memcheck --error-exitcode=9 --print-limit 20 "$G" --gtest_filter='CudaGraphSignal*' 2>&1 | grep -E "ERROR SUMMARY|Invalid|^\[  |Failure" | head -30
  run 240 "$cs" --tool racecheck --error-exitcode=9 --print-limit 20 "$G" --gtest_filter='CudaGraphSignal.KernelOnly*:CudaGraphSignal.Eager*' 2>&1 | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|^\[  |Failure" | head -30
fi

if has encoder; then
  section "encoder (issue 3)"
  b --model encoder --batch 1 --threads 1,8 --policies none
  b --model encoder --batch 1 --graphs --threads 1,8,16 --policies none
  b --model encoder --batch 64 --threads 1 --policies none
  b --model encoder --batch 256 --threads 1 --policies none
  TANDEM_CUDA_TF32=1 b --model encoder --batch 256 --threads 1 --policies none
  run 60 python3 bench/torch_reference.py --model encoder --batch 1 --threads 1,8 --modes eager,graph --seconds "$S"
  run 60 python3 bench/torch_reference.py --model encoder --batch 64,256 --threads 1 --modes eager --seconds "$S"
  run 60 python3 bench/torch_reference.py --model mlp --batch 1024,4096 --threads 1 --modes eager --seconds "$S"
fi

if has fused; then
  section "the fused encoder against op by op (Note [Fused encoder]), alternating, two rounds"
  run 180 "$G" --gtest_filter='*CudaFusedEncoder*:*CudaModels*:CudaGraphMemory.*' 2>&1 | grep -E "^\[  |Failure|Expected|Which|rror" | head -20
  for round in 1 2; do
    for fused in 0 1; do
      TANDEM_CUDA_FUSED_ENCODER=$fused b --model encoder --batch 1 --graphs --threads 1,8,16 --policies none
      TANDEM_CUDA_FUSED_ENCODER=$fused b --model encoder --batch 2 --graphs --threads 1,8 --policies none
    done
    b --model empty --threads 1,8 --policies none
  done
  run 60 python3 bench/torch_reference.py --model encoder --batch 1 --threads 8 --modes eager --seconds "$S"
fi

if has phases; then
  section "where the fused encoder's time goes (PhaseClock in encoder_kernel.cu), 1 and 8 threads"
  gen=(); command -v ninja >/dev/null || gen=(-G "Unix Makefiles")
  run 300 cmake --preset cuda "${gen[@]}" -B build/cuda-clocks \
    -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" \
    -DCMAKE_CUDA_FLAGS=-DTANDEM_ENCODER_PHASE_CLOCKS >"$OUT/build_clocks.txt" 2>&1
  run 500 cmake --build build/cuda-clocks -j"$(nproc)" --target tandem >>"$OUT/build_clocks.txt" 2>&1
  for t in 1 8; do
    run 60 build/cuda-clocks/apps/tandem/tandem bench --device cuda --seconds "$S" --policies none \
      --model encoder --graphs --threads $t > "$OUT/phases_$t.txt" 2>&1
    grep -E "^none" "$OUT/phases_$t.txt"
    grep -A 13 "encoder phases" "$OUT/phases_$t.txt" | tail -14
  done
fi

if has arena; then
  section "graph-owned memory: tests, batch-1 graphs (kernel-only) next to the ceiling"
  run 180 "$G" --gtest_filter='CudaGraph*:*CudaModels*:*CudaPdl*' 2>&1 | grep -E "^\[  |seed|Failure|Expected|Which|rror|capturer|eager" | head -60
  b --model empty --threads 1,8,16 --policies none --json "$OUT/t_empty_arena.json"
  b --model mlp --batch 1 --graphs --threads 1,8,16 --policies none --json "$OUT/t_mlp1g_arena.json"
  TANDEM_CUDA_PDL=0 b --model mlp --batch 1 --graphs --threads 1,8 --policies none
  b --model encoder --batch 1 --graphs --threads 1,8 --policies none
  b --model empty --threads 8 --policies none
  b --model mlp --batch 1 --graphs --threads 8 --policies none
fi

if has tests; then
  section "all GPU tests"
  TANDEM_CUDA_AUTOTUNE=1 run 240 "$G" 2>&1 | tee "$OUT/gpu_tests.txt" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |FAILED|Failure" | head -30
  run 30 build/cuda/tests/cuda/cuda_unit_tests 2>&1 | tail -1
  run 60 build/cuda/tests/cuda/cuda_fault_tests 2>&1 | grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which|sticky" | head
fi

if has arenasan; then
  section "compute-sanitizer memcheck on the graph tests"
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  run 200 "$cs" --tool memcheck --error-exitcode=9 --print-limit 20 "$G" --gtest_filter='CudaGraph*' 2>&1 | grep -E "ERROR SUMMARY|Invalid|^\[  |Failure" | head -40
fi

if has bqsan; then
  section "compute-sanitizer memcheck on the BatchQueue GPU tests (graph batching included)"
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  run 300 "$cs" --tool memcheck --error-exitcode=9 --print-limit 20 "$G" --gtest_filter='CudaBatchQueue*:CudaGraphMemory.Forget*' 2>&1 | grep -E "ERROR SUMMARY|Invalid|^\[  |Failure" | head -40
fi

if has sanitize; then
  section compute-sanitizer
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  run 120 "$cs" --tool memcheck --error-exitcode=9 --print-limit 20 "$G" --gtest_filter='CudaPdl*:CudaHostBuffer*:CudaNnKernels*' 2>&1 | grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" | head
  run 120 "$cs" --tool racecheck --error-exitcode=9 --print-limit 20 "$G" --gtest_filter='CudaPdl*' 2>&1 | grep -E "RACECHECK SUMMARY|ERROR SUMMARY|Race|PASSED|FAILED" | head
  run 300 "$cs" --tool racecheck --error-exitcode=9 --print-limit 20 "$G" --gtest_filter='CudaNnKernels.Attention*' 2>&1 | grep -E "RACECHECK SUMMARY|ERROR SUMMARY|Race|PASSED|FAILED" | head
  run 60 "$cs" --tool synccheck --error-exitcode=9 "$G" --gtest_filter='CudaPdl*' 2>&1 | grep -E "ERROR SUMMARY|PASSED|FAILED" | head
fi
section done
