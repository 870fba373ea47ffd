#!/usr/bin/env bash
# Builds prometheus-adapter — the baseline metrics-registry is compared against — from its
# Go module at a pinned version into a cache folder outside the clone. A second run finds it
# and returns at once.
#
# Prints the folder holding the `adapter` binary on its last line. That folder also holds
# `source`, a link to the module's files in the Go module cache (docs/, deploy/, pkg/), which
# tests read; nothing of it is copied into the clone.
set -euo pipefail

ADAPTER_VERSION="${ADAPTER_VERSION:-v0.12.0}"
MODULE="sigs.k8s.io/prometheus-adapter"
. "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"
OUT="$CACHE_ROOT/prometheus-adapter/$ADAPTER_VERSION"

require_go "build prometheus-adapter"

complete() { [ -x "$OUT/adapter" ] && [ -f "$OUT/source/go.mod" ]; }
if complete; then echo "$OUT"; exit 0; fi

mkdir -p "$OUT"
use_go_caches

source_dir="$(module_source "$MODULE" "$ADAPTER_VERSION" "go.mod")"
ln -sfn "$source_dir" "$OUT/source"

if [ ! -x "$OUT/adapter" ]; then
  echo "==> building prometheus-adapter $ADAPTER_VERSION (several minutes the first time)" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # `go install $MODULE/cmd/adapter@$ADAPTER_VERSION` asks the module proxy for the module's
  # version list, which it refuses; a wrapper module that requires the version builds the
  # same package with the dependency versions the adapter's own go.mod pins.
  printf 'module metrics-registry.local/adapter-build\ngo 1.22\nrequire %s %s\n' "$MODULE" "$ADAPTER_VERSION" > "$work/go.mod"
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$OUT/adapter.tmp" "$MODULE/cmd/adapter")
  mv "$OUT/adapter.tmp" "$OUT/adapter"
fi

complete
echo "$OUT"
