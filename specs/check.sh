#!/usr/bin/env bash
# check.sh — model-checks every specs/*.pml exhaustively with spin, for each `check:` line of its
# header (must hold: no assertion violation, no invalid end state) and each `violation:` line
# (a deliberately broken variant: spin must find the error, proving the property has teeth).
# Prints one row per run: model, defines, result, states stored, search depth reached, seconds
# (the search alone, not compiling the verifier). Exit 1 on any surprise.
#   usage: specs/check.sh [MODEL.pml ...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v spin >/dev/null || { echo "check.sh: spin not found (apt-get install spin)"; exit 2; }
models=("$@")
[ ${#models[@]} -gt 0 ] || models=("$here"/*.pml)
status=0
printf '%-22s %-58s %-10s %12s %6s %8s\n' model defines result states depth seconds
for model in "${models[@]}"; do
  name=$(basename "$model")
  while IFS= read -r line; do
    kind=${line%%:*}
    defines=${line#*: }
    cp "$model" "$work/$name"
    ( cd "$work" && spin $defines -a "$name" >/dev/null && \
      gcc -O2 -DSAFETY -DCOLLAPSE -DVECTORSZ=4096 -w -o pan pan.c ) || { echo "$name: spin/gcc failed"; status=1; continue; }
    start=$EPOCHREALTIME
    out=$( cd "$work" && ./pan -m10000000 -n 2>&1 )
    secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    errors=$(echo "$out" | sed -n 's/.*errors: \([0-9]*\).*/\1/p')
    states=$(echo "$out" | sed -n 's/^ *\([0-9e+.]*\) states, stored.*/\1/p')
    depth=$(echo "$out" | sed -n 's/.*depth reached \([0-9]*\).*/\1/p')
    if echo "$out" | grep -q "max search depth too small"; then errors=depth; fi
    if [ "$kind" = check ]; then
      [ "$errors" = 0 ] && result=holds || { result="FAILS($errors)"; status=1; }
    else
      [ "$errors" != 0 ] && [ "$errors" != depth ] && result=violated || { result="NOT-FOUND"; status=1; }
    fi
    printf '%-22s %-58s %-10s %12s %6s %8.2f\n' "$name" "$defines" "$result" "$states" "$depth" "$secs"
    if [ "$result" != holds ] && [ "$result" != violated ]; then echo "$out" | head -20; fi
  done < <(sed -n 's/^ \*   \(check\|violation\): \(.*\)$/\1: \2/p' "$model")
done
exit $status
