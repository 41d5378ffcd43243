#!/usr/bin/env bash
# Registry benchmark: push then pull a ~200 MB multi-layer image with skopeo, to aloft's registry
# (crates/registry/examples/serve.rs) and to Debian's docker-registry (the reference distribution
# registry), same machine, same run. Prints median times and the aloft/docker-registry ratios;
# never asserts times.
#
#   bench/registry.sh                 # 4 layers x 50 MB, 3 runs per side
#   RUNS=5 LAYERS=2 LAYER_MB=20 bench/registry.sh
#
# Needs: skopeo and docker-registry (apt-get install -y skopeo docker-registry), gzip, tar, cargo.
# Each run starts both registries on fresh data dirs (loopback only) and stops them after.
set -euo pipefail

RUNS=${RUNS:-3}
LAYERS=${LAYERS:-4}
LAYER_MB=${LAYER_MB:-50}
TOKEN=bench-token
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

for tool in skopeo gzip tar sha256sum cargo; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y skopeo)" >&2; exit 1; }
done
DOCKER_REGISTRY=${DOCKER_REGISTRY:-/usr/bin/docker-registry}
[ -x "$DOCKER_REGISTRY" ] || { echo "bench: $DOCKER_REGISTRY is missing (apt-get install -y docker-registry)" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "bench: building the aloft registry example (release)..."
(cd "$ROOT" && cargo build --release --quiet -p aloft-registry --example serve)
SERVE="$ROOT/target/release/examples/serve"

# ---- the image: an OCI layout with random (incompressible) layers ---------------------------
IMAGE="$WORK/image"
mkdir -p "$IMAGE/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' > "$IMAGE/oci-layout"
echo "bench: generating $LAYERS layers of $LAYER_MB MB..."
layers_json=""
diff_ids=""
for i in $(seq 1 "$LAYERS"); do
  dir="$WORK/layer$i"
  mkdir -p "$dir"
  head -c "$((LAYER_MB * 1024 * 1024))" /dev/urandom > "$dir/data$i.bin"
  tar -C "$dir" -cf "$WORK/layer$i.tar" .
  diff_ids+="${diff_ids:+,}\"sha256:$(sha256sum "$WORK/layer$i.tar" | cut -d' ' -f1)\""
  gzip -1 -n -c "$WORK/layer$i.tar" > "$WORK/layer$i.tar.gz"
  rm -rf "$dir" "$WORK/layer$i.tar"
  hex=$(sha256sum "$WORK/layer$i.tar.gz" | cut -d' ' -f1)
  size=$(stat -c %s "$WORK/layer$i.tar.gz")
  mv "$WORK/layer$i.tar.gz" "$IMAGE/blobs/sha256/$hex"
  layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$hex\",\"size\":$size}"
done
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]}}' "$diff_ids" > "$WORK/config.json"
config_hex=$(sha256sum "$WORK/config.json" | cut -d' ' -f1)
config_size=$(stat -c %s "$WORK/config.json")
mv "$WORK/config.json" "$IMAGE/blobs/sha256/$config_hex"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
  "$config_hex" "$config_size" "$layers_json" > "$WORK/manifest.json"
manifest_hex=$(sha256sum "$WORK/manifest.json" | cut -d' ' -f1)
manifest_size=$(stat -c %s "$WORK/manifest.json")
mv "$WORK/manifest.json" "$IMAGE/blobs/sha256/$manifest_hex"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
  "$manifest_hex" "$manifest_size" > "$IMAGE/index.json"
total_mb=$(du -sm "$IMAGE" | cut -f1)
echo "bench: image sha256:$manifest_hex, ${total_mb} MB"

now() { date +%s.%N; }
free_port() {
  local port
  for port in $(seq 15000 15999); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "bench: no free port in 15000-15999" >&2; exit 1
}
start_aloft() { # data dir -> sets ADDR
  "$SERVE" --data-dir "$1" --addr 127.0.0.1:0 --token "$TOKEN" --org bench > "$1.out" 2> "$1.err" &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    ADDR=$(sed -n 's#^listening on http://##p' "$1.out" 2>/dev/null)
    [ -n "$ADDR" ] && return 0
    sleep 0.1
  done
  echo "bench: the aloft registry did not start: $(cat "$1.err")" >&2; exit 1
}

start_docker_registry() { # data dir -> sets ADDR
  local port
  port=$(free_port)
  mkdir -p "$1"
  cat > "$1.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $1
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
  "$DOCKER_REGISTRY" serve "$1.yml" > "$1.out" 2>&1 &
  PIDS+=($!)
  ADDR="127.0.0.1:$port"
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: docker-registry did not start: $(cat "$1.out")" >&2; exit 1
}

stop_last() {
  local pid=${PIDS[-1]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset 'PIDS[-1]'
}

run_once() { # side run -> prints "push pull"
  local side=$1 run=$2 data="$WORK/$1-$2" creds=() src_creds=() push_start push_end pull_end out
  if [ "$side" = aloft ]; then
    start_aloft "$data"
    creds=(--dest-creds "x:$TOKEN")
    src_creds=(--src-creds "x:$TOKEN")
  else
    start_docker_registry "$data"
    creds=()
    src_creds=()
  fi
  local ref="docker://$ADDR/bench/app:v1"
  out="$WORK/pulled-$side-$run"
  push_start=$(now)
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false "${creds[@]}" "oci:$IMAGE:v1" "$ref" >&2
  push_end=$(now)
  skopeo --insecure-policy copy --quiet --src-tls-verify=false "${src_creds[@]}" "$ref" "oci:$out:v1" >&2
  pull_end=$(now)
  local got
  got=$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$out/index.json")
  if [ "$got" != "sha256:$manifest_hex" ]; then
    echo "bench: $side returned manifest $got, expected sha256:$manifest_hex" >&2; exit 1
  fi
  stop_last
  rm -rf "$data" "$out"
  awk -v a="$push_start" -v b="$push_end" -v c="$pull_end" 'BEGIN {printf "%.3f %.3f\n", b - a, c - b}'
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

declare -A PUSH PULL
for run in $(seq 1 "$RUNS"); do
  for side in aloft docker-registry; do
    read -r push pull < <(run_once "$side" "$run")
    printf 'bench: run %d %-16s push %6.2f s  pull %6.2f s\n' "$run" "$side" "$push" "$pull"
    PUSH[$side]+="$push"$'\n'
    PULL[$side]+="$pull"$'\n'
  done
done

a_push=$(printf '%s' "${PUSH[aloft]}" | median)
a_pull=$(printf '%s' "${PULL[aloft]}" | median)
d_push=$(printf '%s' "${PUSH[docker-registry]}" | median)
d_pull=$(printf '%s' "${PULL[docker-registry]}" | median)
echo
echo "registry benchmark: ${total_mb} MB image ($LAYERS layers), skopeo push then pull, median of $RUNS runs"
awk -v mb="$total_mb" -v ap="$a_push" -v al="$a_pull" -v dp="$d_push" -v dl="$d_pull" 'BEGIN {
  printf "  %-16s push %6.2f s (%6.1f MB/s)  pull %6.2f s (%6.1f MB/s)\n", "aloft", ap, mb / ap, al, mb / al
  printf "  %-16s push %6.2f s (%6.1f MB/s)  pull %6.2f s (%6.1f MB/s)\n", "docker-registry", dp, mb / dp, dl, mb / dl
  printf "  ratio aloft/docker-registry (time; < 1 means aloft is faster): push %.2f  pull %.2f\n", ap / dp, al / dl
}'
