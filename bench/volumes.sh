#!/usr/bin/env bash
# Volume benchmark (see bench/volumes.py): a gVisor machine's start and its writes with an
# encrypted volume, against the same without one, in one run; prints medians and ratios.
#
#   bench/volumes.sh
#   PROFILE=debug bench/volumes.sh     # the debug build the tests use (no release build)
#   RUNS=5 bench/volumes.sh
#
# Needs root. Sets up (packages, build) with scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
case "$profile" in
  release) dir=release ;;
  debug|dev) profile=dev; dir=debug ;;
  *) echo "PROFILE must be release or debug" >&2; exit 2 ;;
esac
scripts/setup.sh --profile "$profile"
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }
ALOFT_BIN="$PWD/target/$dir/aloft" exec python3 bench/volumes.py "$@"
