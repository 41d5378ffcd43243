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

echo "==> code shape (scripts/shape.py: function and file sizes, module cycles)"
python3 scripts/shape.py

echo "==> cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --locked --workspace 2>&1 | tee "$log"

echo "==> the README's main command, once (scripts/demo.sh --once)"
demo_dir="$(mktemp -d)"
scripts/demo.sh --profile dev --once --data-dir "$demo_dir"
rm -rf "$demo_dir"

# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' "$log"
