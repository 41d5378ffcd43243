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
exec "$(dirname "$0")/dev-cluster.sh" regions "$@"
