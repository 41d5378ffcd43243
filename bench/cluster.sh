#!/usr/bin/env bash
# Catalog propagation benchmark (crates/catalog/examples/propagation.rs): from a machine becoming
# `started` on one host to every other host's proxy routing to it, p50/p99, at 3, 10 and 50
# hosts (in-process: one control plane, agents on the sim runtime, gossip over loopback UDP).
# The reference platform reports p99 ~1 s.
#
#   bench/cluster.sh                       # 3,10,50 hosts, 30 machines each, gossip every 100 ms
#   bench/cluster.sh 3,10,50 50 200        # sizes, machines per size, gossip interval (ms)
#
# Needs no root.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -q -p aloft-catalog --example propagation -- "${1:-3,10,50}" "${2:-30}" "${3:-100}"
