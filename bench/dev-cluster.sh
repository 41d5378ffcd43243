#!/usr/bin/env bash
# Shared by the dev-cluster benchmarks (bench/regions.sh, bench/deploy.sh): checks the tools, builds
# aloft in $PROFILE (default release), aloft-init and the example app, and runs bench/NAME.py.
#   bench/dev-cluster.sh NAME [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"
shift
for tool in runsc skopeo curl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing: run the README's set-up first" >&2; exit 1; }
done
PROFILE="${PROFILE:-release}"
echo "==> building aloft ($PROFILE)"
if [ "$PROFILE" = release ]; then cargo build --release --locked -q -p aloft; else cargo build --locked -q -p aloft; fi
export ALOFT_BIN="$PWD/target/$PROFILE/aloft"
[ -x target/static/x86_64-unknown-linux-gnu/release/aloft-init ] || scripts/build-init.sh
[ -x target/static/x86_64-unknown-linux-gnu/release/hello ] || scripts/build-hello.sh
exec python3 "bench/$name.py" "$@"
