#!/usr/bin/env bash
# Builds the example app, examples/hello, as a static binary (glibc, +crt-static), and with
# arguments packs it on top of a busybox root filesystem into an OCI layout — no Docker, no internet.
#   scripts/build-hello.sh                      # -> target/static/x86_64-unknown-linux-gnu/release/hello
#   scripts/build-hello.sh ALOFT_BINARY OUT_DIR # also writes the layout OUT_DIR with tag `latest`
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
echo "==> building examples/hello (static)"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --locked --release -q -p hello --target "$target" --target-dir target/static
[ $# -eq 0 ] && exit 0
aloft="$1"
out="$2"
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
install -m 0755 "target/static/$target/release/hello" "$rootfs/hello"
"$aloft" image build --busybox --rootfs "$rootfs" --entrypoint /hello --expose 8080 \
  --env PORT=8080 -o "oci:$out:latest"
