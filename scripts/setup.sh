#!/usr/bin/env bash
# Installs what aloft needs on a fresh Debian machine (as root) and builds it.
#   scripts/setup.sh [--profile dev|release]
# Idempotent: packages already present are not reinstalled, and `apt-get update` runs only when
# something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dev
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    *) echo "setup.sh: unknown argument $1 (use --profile dev|release)" >&2; exit 2 ;;
  esac
done

# Debian packages aloft uses. Build: a C compiler for the bundled SQLite. Images: skopeo (a real
# registry client, used by the tests and to push images), e2fsprogs (mkfs.ext4 for microVM root
# filesystems), busybox-static (the base of the test images), buildah (`aloft deploy` of a
# Dockerfile, no Docker daemon). Machines: runsc (gVisor),
# qemu-system-x86 + qemu-utils (microVMs and their copy-on-write disks; volumes: qemu-img and
# qemu-storage-daemon, with e2fsprogs for their filesystems), iproute2 + nftables (the
# host's bridge, network namespaces and isolation rules), kmod + xz-utils (the guest kernel's
# modules). Tests: curl.
packages=(gcc pkg-config curl ca-certificates procps skopeo e2fsprogs busybox-static buildah
  runsc qemu-system-x86 qemu-utils iproute2 nftables kmod xz-utils)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: missing packages: ${missing[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  echo "==> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: cargo is not installed; install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi

echo "==> building aloft ($profile profile)"
if [ "$profile" = release ]; then
  cargo build --release --locked -p aloft
else
  cargo build --locked -p aloft
fi

# aloft-init is the PID 1 of every machine: a static binary (always optimized, it is small) in
# target/static, where `aloft` finds it (or set ALOFT_INIT).
scripts/build-init.sh
# The example app as the machines run it (the demo's image; end-to-end tests and benchmarks use it).
scripts/build-hello.sh

# The microVM backend boots Debian's kernel; fetched once and cached.
scripts/guest-kernel.sh

# The fly-go compatibility check (compat/flygo) is a Go program: its modules come from the Go
# module proxy once (the Go module cache keeps them). Without Go it is skipped (the test says so).
if command -v go >/dev/null 2>&1; then
  echo "==> downloading compat/flygo's Go modules"
  go -C compat/flygo mod download
else
  echo "setup.sh: Go is not installed; the fly-go compatibility test will be skipped" >&2
fi

# schemathesis (PyPI) checks the Machines API against its OpenAPI document
# (crates/aloft/tests/schemathesis.rs): installed once into a virtualenv in the cache.
st_venv="${XDG_CACHE_HOME:-$HOME/.cache}/aloft/schemathesis"
st_want="$(cat compat/schemathesis/requirements.txt)"
if [ "$(cat "$st_venv/installed" 2>/dev/null)" != "$st_want" ]; then
  echo "==> installing schemathesis into $st_venv"
  rm -rf "$st_venv"
  python3 -m venv "$st_venv"
  "$st_venv/bin/pip" install -q -r compat/schemathesis/requirements.txt
  echo "$st_want" > "$st_venv/installed"
fi
