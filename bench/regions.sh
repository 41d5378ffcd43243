#!/usr/bin/env bash
# Multi-region benchmark (see bench/regions.py): a dev cluster of three regions with emulated
# distance; client latency per region through the edge vs straight to the nearest machine, and a
# burst larger than one region's hard limits (overflow to the next region vs none).
#
#   bench/regions.sh
#   REQUESTS=100 BURST=800 CONCURRENCY=32 bench/regions.sh
#   PROFILE=debug bench/regions.sh     # the debug build tests use (no release build)
#
# Needs root (network namespaces); gVisor, skopeo and aloft-init as the README's set-up installs.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in runsc skopeo curl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing: run the README's set-up first" >&2; exit 1; }
done
PROFILE="${PROFILE:-release}"
echo "==> building aloft ($PROFILE) and aloft-init"
if [ "$PROFILE" = release ]; then cargo build --release --locked -q -p aloft; else cargo build --locked -q -p aloft; fi
export ALOFT_BIN="$PWD/target/$PROFILE/aloft"
[ -x target/static/x86_64-unknown-linux-gnu/release/aloft-init ] || scripts/build-init.sh
[ -x target/static/x86_64-unknown-linux-gnu/release/hello ] || scripts/build-hello.sh
exec python3 bench/regions.py "$@"
