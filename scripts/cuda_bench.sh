#!/usr/bin/env bash
# scripts/cuda_bench.sh — tandem and PyTorch side by side on the GPU, in one run (docs/benchmarks.md
# "CUDA (H100)" records its output). Needs build/cuda (scripts/gpu_check.sh builds it).
set -uo pipefail
T=${TANDEM:-build/cuda/apps/tandem/tandem}
S=${SECONDS_PER_POINT:-1}
OUT=${OUT:-/tmp/gpu_check}
py=python3
b() { echo "\$ tandem bench $*"; "$T" bench --device cuda --seconds "$S" "$@" | grep -v "^efficiency ="; }
echo "== ceiling: one empty kernel + synchronize per op"
b --model empty --threads 1,8,16 --policies none,global --json "$OUT/t_empty.json"
echo "== mlp batch 1, eager (tandem nn forward: 3 kernels + 2 pool allocations per forward)"
b --model mlp --batch 1 --threads 1,8,16 --policies none,global --json "$OUT/t_mlp1.json"
echo "== mlp batch 1, CUDA graph per thread"
b --model mlp --batch 1 --graphs --threads 1,8,16 --policies none,stream,global --json "$OUT/t_mlp1g.json"
echo "== encoder batch 1"
b --model encoder --batch 1 --threads 1,8 --policies none --json "$OUT/t_enc1.json"
b --model encoder --batch 1 --graphs --threads 1,8,16 --policies none,global --json "$OUT/t_enc1g.json"
echo "== batched, 1 thread: fp32, then TF32 (TANDEM_CUDA_TF32=1)"
b --model mlp --batch 1024 --threads 1 --policies none
b --model mlp --batch 4096 --threads 1 --policies none
TANDEM_CUDA_TF32=1 b --model mlp --batch 1024 --threads 1 --policies none
TANDEM_CUDA_TF32=1 b --model mlp --batch 4096 --threads 1 --policies none
b --model encoder --batch 64 --threads 1 --policies none
b --model encoder --batch 256 --threads 1 --policies none
echo "== PyTorch (same card, same run)"
$py bench/torch_reference.py --model mlp --batch 1 --threads 1,8,16 --modes eager,graph --seconds "$S"
$py bench/torch_reference.py --model mlp --batch 1024,4096 --threads 1 --modes eager --seconds "$S"
$py bench/torch_reference.py --model mlp --batch 1024,4096 --threads 1 --modes eager --seconds "$S" --tf32
$py bench/torch_reference.py --model encoder --batch 1 --threads 1,8 --modes eager,graph --seconds "$S"
$py bench/torch_reference.py --model encoder --batch 64,256 --threads 1 --modes eager --seconds "$S"
