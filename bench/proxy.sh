#!/usr/bin/env bash
# Proxy benchmark (see bench/proxy.py): aloft's proxy against nginx and HAProxy as reverse
# proxies in front of the same small HTTP backend, in one run; wrk with keep-alive at a fixed
# concurrency; prints requests/s, p50 and p99 of each and the ratios.
#
#   bench/proxy.sh
#   DURATION=20 CONNECTIONS=64 bench/proxy.sh
#
# Needs root for apt-get when wrk, nginx-light or haproxy are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for pair in wrk:wrk nginx:nginx-light haproxy:haproxy python3:python3; do
  command -v "${pair%%:*}" >/dev/null || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  # The packages start their own services on ports 80 and 8404; the benchmark runs its own.
  systemctl stop nginx haproxy 2>/dev/null || service nginx stop 2>/dev/null || true
fi
echo "==> building aloft's proxy (release)"
cargo build --release --locked -q -p aloft-proxy --example fixed
exec python3 bench/proxy.py "$@"
