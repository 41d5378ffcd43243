#!/usr/bin/env bash
# Fetches Debian's kernel (package linux-image-amd64) for microVM guests and caches it:
#   <cache>/<version>/vmlinuz
#   <cache>/<version>/root/lib/modules/<version>/...   (with modules.dep from depmod)
#   <cache>/current                                    (the version to use)
#   scripts/guest-kernel.sh [--cache DIR]     # default /var/cache/aloft/kernel ($ALOFT_KERNEL_DIR)
# Idempotent: returns at once when the kernel is cached. Installs what microVMs need when missing:
# qemu-system-x86 and qemu-utils (to run guests), kmod (depmod, here), e2fsprogs (mkfs.ext4 for
# images' disks) and busybox-static (the initramfs's rescue shell).
set -euo pipefail
cache="${ALOFT_KERNEL_DIR:-/var/cache/aloft/kernel}"
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) cache="$2"; shift 2 ;;
    *) echo "guest-kernel.sh: unknown argument $1 (use --cache DIR)" >&2; exit 2 ;;
  esac
done
export PATH="$PATH:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive
missing=()
for pair in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils depmod:kmod mkfs.ext4:e2fsprogs \
            busybox:busybox-static; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
if [ -s "$cache/current" ] && [ -f "$cache/$(cat "$cache/current")/vmlinuz" ]; then
  exit 0
fi
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$pkg" ] || { echo "guest-kernel.sh: cannot find Debian's kernel package (linux-image-amd64)" >&2; exit 1; }
echo "==> fetching the guest kernel ($pkg)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$pkg")
dpkg-deb -x "$work"/*.deb "$work/root"
version=$(ls "$work/root/lib/modules")
mkdir -p "$cache/$version.tmp"
cp "$work/root/boot/vmlinuz-$version" "$cache/$version.tmp/vmlinuz"
mkdir -p "$cache/$version.tmp/root/lib"
mv "$work/root/lib/modules" "$cache/$version.tmp/root/lib/modules"
depmod -b "$cache/$version.tmp/root" "$version"
rm -rf "$cache/$version"
mv "$cache/$version.tmp" "$cache/$version"
echo "$version" > "$cache/current.tmp" && mv "$cache/current.tmp" "$cache/current"
echo "==> guest kernel $version cached in $cache"
