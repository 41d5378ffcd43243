#!/usr/bin/env bash
# Builds aloft-init, the PID 1 of every machine, as a static binary (glibc with +crt-static: it
# runs inside images that may have no C library). Always optimized; its own target dir, because
# RUSTFLAGS differ from the workspace build's.
#   scripts/build-init.sh     # -> target/static/x86_64-unknown-linux-gnu/release/aloft-init
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --locked --release -q -p aloft-init --target x86_64-unknown-linux-gnu --target-dir target/static
