#!/usr/bin/env bash
# The main job: set up, build, start an embedded single-host cloud (`aloft dev up`), build the example
# app's image (examples/hello, no Docker), push it to the cloud's registry with skopeo, deploy it with
# its fly.toml (`aloft deploy`: a release, its release command, health checks), scale it to two
# machines, show them, and keep serving until Ctrl-C.
#   scripts/demo.sh [--profile release|dev] [--data-dir DIR] [--runtime auto|gvisor|microvm] [--once]
# --once destroys the demo's machines and stops the cloud after the demo instead of staying in the
# foreground (used by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
data_dir="${ALOFT_DATA_DIR:-$HOME/.local/share/aloft/dev}"
once=0
runtime=auto
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --data-dir) data_dir="$2"; shift 2 ;;
    --runtime) runtime="$2"; shift 2 ;;
    --once) once=1; shift ;;
    *) echo "demo.sh: unknown argument $1 (use --profile, --data-dir, --runtime, --once)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh --profile "$profile"
if [ "$profile" = release ]; then aloft="$PWD/target/release/aloft"; else aloft="$PWD/target/debug/aloft"; fi

export ALOFT_DATA_DIR="$data_dir"
mkdir -p "$data_dir"
rm -f "$data_dir/api-url"
echo "==> starting aloft dev up (data in $data_dir)"
"$aloft" dev up --data-dir "$data_dir" --runtime "$runtime" &
dev_pid=$!
stop() { kill -TERM "$dev_pid" 2>/dev/null || true; wait "$dev_pid" 2>/dev/null || true; }
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

for _ in $(seq 1 100); do
  [ -s "$data_dir/api-url" ] && break
  kill -0 "$dev_pid" 2>/dev/null || { echo "demo.sh: aloft dev up exited; see the messages above" >&2; exit 1; }
  sleep 0.1
done
[ -s "$data_dir/api-url" ] || { echo "demo.sh: aloft dev up did not start within 10 s" >&2; stop; exit 1; }
export ALOFT_API_URL
ALOFT_API_URL="$(cat "$data_dir/api-url")"

registry="$(cat "$data_dir/registry-url")"
registry="${registry#http://}"
token="$(cat "$data_dir/token")"

echo "==> building the example app's image and pushing it to $registry"
image_dir="$(mktemp -d)"
scripts/build-hello.sh "$aloft" "$image_dir/hello"
skopeo copy --quiet --dest-tls-verify=false --dest-creds "x:$token" \
  "oci:$image_dir/hello:latest" "docker://$registry/personal/hello:latest"
rm -rf "$image_dir"

echo "==> deploying the example app with examples/hello/fly.toml"
config=examples/hello/fly.toml
"$aloft" apps list --json | grep -q '"name": *"hello"' || "$aloft" apps create hello
"$aloft" deploy -c "$config"
"$aloft" scale count 2 -c "$config"
"$aloft" releases -c "$config"
"$aloft" status -a hello
ids=$("$aloft" machine list -a hello --json | grep -o '"id": *"[0-9a-f]*"' | grep -o '[0-9a-f]\{14\}')
# The host reaches each machine on its private (6PN) address.
for id in $ids; do
  ip=$("$aloft" machine status "$id" -a hello --json | grep -o '"private_ip": *"[0-9a-f:]*"' | grep -o 'fdaa[0-9a-f:]*')
  echo "==> machine $id answers on http://[$ip]:8080/"
  ok=0
  for _ in $(seq 1 100); do
    if curl -fsS -g --max-time 5 "http://[$ip]:8080/"; then ok=1; break; fi
    sleep 0.3
  done
  [ "$ok" = 1 ] || { echo "demo.sh: machine $id did not answer on [$ip]:8080; its logs:" >&2; "$aloft" logs -a hello -m "$id" --no-tail >&2; stop; exit 1; }
done
proxy="$(cat "$data_dir/proxy-url")"
app_url="http://hello.localhost:${proxy##*:}/"
echo "==> through the proxy, $app_url (each request to the least loaded machine):"
for _ in 1 2 3 4; do
  curl -fsS --max-time 5 "$app_url" | head -2
done
first=$(echo "$ids" | head -1)
echo "==> a command in a machine, with the machine's environment:"
"$aloft" machine exec "$first" -a hello -- sh -c 'echo "$FLY_MACHINE_ID in $FLY_REGION: $(ls /)"'
echo "==> its logs:"
"$aloft" logs -a hello -m "$first" --no-tail | tail -5

if [ "$once" = 1 ]; then
  "$aloft" apps destroy hello --yes
  stop
  exit 0
fi
echo
echo "aloft is running. In another terminal:"
echo "  export ALOFT_API_URL=$ALOFT_API_URL ALOFT_DATA_DIR=$data_dir"
echo "  $aloft machine list -a hello"
echo "Press Ctrl-C to stop."
wait "$dev_pid"
