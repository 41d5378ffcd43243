#!/usr/bin/env bash
# Sets up everything and runs every test tier that this machine supports, in one build profile (dev).
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --profile dev

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "==> cargo test"
cargo test --locked --workspace
