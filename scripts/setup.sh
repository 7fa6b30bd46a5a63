#!/usr/bin/env bash
# setup.sh — installs everything tandem needs to build and test, from Debian's packages.
# Idempotent: packages already present are skipped quickly. Uses sudo when not root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache
  clang libclang-rt-dev                      # the asan/tsan presets and -Wthread-safety
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev
  libopenblas-dev                            # BLAS for the CPU backend
  libdw-dev elfutils                         # crashrate: symbolized stacks of crashed runs
  spin                                       # specs/: model checking
  python3 python3-numpy python3-torch        # numerical reference for the tests (/usr/bin/python3)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup.sh: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup.sh: done"
