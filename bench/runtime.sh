#!/usr/bin/env bash
# Machine runtime benchmark (see bench/runtime.py): aloft's gVisor and microVM backends against
# bare runsc and the bare qemu command line, in one run; prints medians and ratios.
#
#   bench/runtime.sh                   # both backends (microVM under TCG here: slow, 2 runs)
#   bench/runtime.sh gvisor            # one backend
#   RUNS=9 MACHINES=20 VM_RUNS=3 bench/runtime.sh
#
# Needs root. Sets up (packages, release build, guest kernel) with scripts/setup.sh; the peer
# needs umoci and python3, installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --profile release
missing=()
command -v umoci >/dev/null || missing+=(umoci)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get install -y -qq "${missing[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
exec python3 bench/runtime.py "$@"
