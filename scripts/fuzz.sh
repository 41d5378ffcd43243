#!/usr/bin/env bash
# The long fuzzing run: every fuzz target (proptest-driven; `cargo test` runs each with a few
# hundred cases, this runs each with many more). A failure prints the minimal input; make it a
# named regression test next to the target before fixing the code.
#   scripts/fuzz.sh [CASES] [FILTER]     CASES: cases per target (default 200000);
#                                        FILTER: only the targets whose test name contains it
set -euo pipefail
cd "$(dirname "$0")/.."

export PROPTEST_CASES="${1:-200000}"
filter="${2:-fuzz_}"
# A target that fails keeps going with the others; the run fails at the end.
failed=()

# crate and test target (`--lib` for in-crate targets) of every fuzz target
targets=(
  "aloft-dns --test fuzz_dns"
  "aloft-image --lib"
  "aloft-image --test fuzz_reference"
  "aloft-oci --test fuzz_oci"
  "aloft-registry --test fuzz_content_range"
  "aloft-proxy --test fuzz_replay"
  "aloft-appconfig --test fuzz_flytoml"
  "aloft-types --test fuzz_api_types"
  "aloft-control --test fuzz_api"
)

for target in "${targets[@]}"; do
  read -r crate kind name <<<"$target"
  echo "==> $crate $kind ${name:-} ($PROPTEST_CASES cases)"
  # shellcheck disable=SC2086
  if ! cargo test --locked -p "$crate" $kind ${name:-} -- "$filter"; then
    failed+=("$crate ${name:-lib}")
  fi
done

if ((${#failed[@]})); then
  echo "fuzzing found failures in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: no failure in ${#targets[@]} targets at $PROPTEST_CASES cases each"
