#!/usr/bin/env bash
# Deploy benchmark (see bench/deploy.py): the example app on two machines in each of three regions
# of a dev cluster; the time of a new release per strategy and the failed requests seen by a client
# loop in every region during it, vs `immediate` (no orchestration).
#
#   bench/deploy.sh
#   PROFILE=debug bench/deploy.sh     # the debug build tests use (no release build)
#
# Needs root (network namespaces); gVisor, skopeo and aloft-init as the README's set-up installs.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in runsc skopeo curl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing: run the README's set-up first" >&2; exit 1; }
done
PROFILE="${PROFILE:-release}"
echo "==> building aloft ($PROFILE)"
if [ "$PROFILE" = release ]; then cargo build --release --locked -q -p aloft; else cargo build --locked -q -p aloft; fi
export ALOFT_BIN="$PWD/target/$PROFILE/aloft"
[ -x target/static/x86_64-unknown-linux-gnu/release/aloft-init ] || scripts/build-init.sh
[ -x target/static/x86_64-unknown-linux-gnu/release/hello ] || scripts/build-hello.sh
exec python3 bench/deploy.py "$@"
