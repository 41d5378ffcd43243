#!/usr/bin/env bash
# Image pipeline benchmark: an image reference to an ext4 root filesystem.
#
#   (a) aloft: crates/image's pipeline (`--example pull --ext4`): pull, verify, unpack, assemble,
#       mkfs.ext4 -d;
#   (b) peer:  `skopeo copy docker://... oci:...` + `umoci unpack --rootless` + `mkfs.ext4 -d`
#       (same size formula);
# both from the same local registry (crates/image's test registry serving an OCI layout), same
# machine, same run. Then the re-deploy case: aloft pulls v2, which differs from v1 in one layer,
# onto a host that has v1: bytes fetched and time vs the first deploy.
# Prints medians and ratios; never asserts times.
#
#   bench/image.sh                          # busybox + 3 layers x 8 MB of random files, 5 runs
#   RUNS=3 LAYERS=4 LAYER_MB=16 bench/image.sh
#
# Needs: skopeo, umoci, e2fsprogs, busybox-static (installed with apt-get when missing), cargo.
set -euo pipefail

RUNS=${RUNS:-5}
LAYERS=${LAYERS:-3}
LAYER_MB=${LAYER_MB:-8}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$PATH:/usr/sbin:/sbin"

missing=()
command -v skopeo >/dev/null || missing+=(skopeo)
command -v umoci >/dev/null || missing+=(umoci)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
[ -x /bin/busybox ] || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq "${missing[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "bench: not root; install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "bench: building the examples (release)..."
(cd "$ROOT" && cargo build --release --quiet -p aloft-image --examples)
EX="$ROOT/target/release/examples"

# ---- the images: v1 = busybox + LAYERS layers of random files; v2 = v1 with the last layer changed
echo "bench: generating busybox + $LAYERS layers x $LAYER_MB MB of random files..."
LAYER_ARGS=()
for i in $(seq 1 "$LAYERS"); do
  d="$WORK/layer$i/data$i"
  mkdir -p "$d"
  for f in $(seq 1 "$LAYER_MB"); do head -c 1048576 /dev/urandom > "$d/file$f.bin"; done
  LAYER_ARGS+=(--layer-dir "$WORK/layer$i")
done
LAYOUT="$WORK/layout"
"$EX/build-layout" --out "$LAYOUT" --tag v1 --busybox "${LAYER_ARGS[@]}" >/dev/null
for f in $(seq 1 "$LAYER_MB"); do head -c 1048576 /dev/urandom > "$WORK/layer$LAYERS/data$LAYERS/file$f.bin"; done
"$EX/build-layout" --out "$LAYOUT" --tag v2 --busybox "${LAYER_ARGS[@]}" >/dev/null
IMAGE_MB=$(du -sm "$LAYOUT/blobs" | cut -f1)
echo "bench: layout with v1 and v2: ${IMAGE_MB} MB of blobs"

# ---- the registry
"$EX/serve-layout" --layout "$LAYOUT" --repo bench/app > "$WORK/serve.out" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  grep -q '^listening on' "$WORK/serve.out" 2>/dev/null && break
  sleep 0.1
done
HOST=$(sed -n 's|^listening on http://||p' "$WORK/serve.out")
[ -n "$HOST" ] || { echo "bench: the registry did not start:"; cat "$WORK/serve.out"; exit 1; }
REF="$HOST/bench/app"

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\\n\", $1 }"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
json() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }

# ---- (a) aloft
echo "bench: (a) aloft pull + ext4, $RUNS runs"
: > "$WORK/aloft.times"
for r in $(seq 1 "$RUNS"); do
  sync
  t0=$(now)
  "$EX/pull" --data-dir "$WORK/aloft$r" --ext4 "$REF:v1" > "$WORK/aloft$r.json"
  t1=$(now)
  calc "$t1 - $t0" >> "$WORK/aloft.times"
  [ "$r" = 1 ] && FIRST_BYTES=$(json bytes_fetched < "$WORK/aloft1.json")
  rm -rf "$WORK/aloft$r"
done

# ---- (b) skopeo + umoci + mkfs.ext4
echo "bench: (b) skopeo copy + umoci unpack --rootless + mkfs.ext4 -d, $RUNS runs"
: > "$WORK/peer.times"
for r in $(seq 1 "$RUNS"); do
  p="$WORK/peer$r"
  mkdir -p "$p"
  sync
  t0=$(now)
  skopeo copy -q --src-tls-verify=false "docker://$REF:v1" "oci:$p/oci:v1"
  umoci unpack --rootless --image "$p/oci:v1" "$p/bundle" >/dev/null
  content=$(du -s --block-size=1 "$p/bundle/rootfs" | cut -f1)
  size_mb=$(( (content * 13 / 10 + 64 * 1048576 + 1048575) / 1048576 ))
  mkfs.ext4 -q -F -d "$p/bundle/rootfs" "$p/rootfs.ext4" "${size_mb}M" >/dev/null
  t1=$(now)
  calc "$t1 - $t0" >> "$WORK/peer.times"
  rm -rf "$p"
done

# ---- re-deploy: v2 (one layer changed) onto a host that has v1
echo "bench: re-deploy of v2 (one changed layer) after v1, aloft, $RUNS runs"
: > "$WORK/redeploy.times"
for r in $(seq 1 "$RUNS"); do
  d="$WORK/redeploy$r"
  "$EX/pull" --data-dir "$d" --ext4 "$REF:v1" > /dev/null
  sync
  t0=$(now)
  "$EX/pull" --data-dir "$d" --ext4 "$REF:v2" > "$WORK/redeploy$r.json"
  t1=$(now)
  calc "$t1 - $t0" >> "$WORK/redeploy.times"
  [ "$r" = 1 ] && REDEPLOY_BYTES=$(json bytes_fetched < "$WORK/redeploy1.json") \
    && REDEPLOY_CACHED=$(json layers_cached < "$WORK/redeploy1.json") \
    && REDEPLOY_TOTAL=$(json layers_total < "$WORK/redeploy1.json")
  rm -rf "$d"
done

A=$(median < "$WORK/aloft.times")
B=$(median < "$WORK/peer.times")
R=$(median < "$WORK/redeploy.times")
echo
echo "image: busybox + $LAYERS x $LAYER_MB MB layers (${IMAGE_MB} MB of blobs for v1+v2), $RUNS runs each, medians"
printf "  first deploy, image -> ext4   aloft: %6.3f s   skopeo+umoci+mkfs.ext4: %6.3f s   ratio peer/aloft: %5.2fx\n" "$A" "$B" "$(calc "$B / $A")"
printf "  re-deploy (1 layer changed)   aloft: %6.3f s   vs first deploy: %5.2f of the time\n" "$R" "$(calc "$R / $A")"
printf "  bytes fetched                 first deploy: %d   re-deploy: %d (%.1f%%), %s of %s layers from the cache\n" \
  "$FIRST_BYTES" "$REDEPLOY_BYTES" "$(calc "100 * $REDEPLOY_BYTES / $FIRST_BYTES")" "$REDEPLOY_CACHED" "$REDEPLOY_TOTAL"
