#!/usr/bin/env bash
# Builds Thanos — the sidecar and Query the backend tests put in front of the test
# Prometheus — from its Go module at a pinned version into a cache folder outside the
# clone. A second run finds it and returns at once.
#
# Prints the folder holding the `thanos` binary on its last line.
set -euo pipefail

# v0.36.1: Query has the tenancy flags the tests use (--query.enforce-tenancy,
# --query.tenant-header, --query.tenant-label-name). Releases from v0.37 on depend on
# Cap'n Proto, whose dependency zenhack.net/go/util the Go module proxy does not serve,
# so they cannot be built from it.
THANOS_VERSION="${THANOS_VERSION:-v0.36.1}"
MODULE="github.com/thanos-io/thanos"
. "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"
OUT="$CACHE_ROOT/thanos/$THANOS_VERSION"

require_go "build Thanos"

if [ -x "$OUT/thanos" ]; then echo "$OUT"; exit 0; fi

mkdir -p "$OUT"
use_go_caches

source_dir="$(module_source "$MODULE" "$THANOS_VERSION" "go.mod")"

echo "==> building thanos $THANOS_VERSION (about 6 minutes on 2 cores the first time)" >&2
# Built inside the module itself, not through a wrapper module as for prometheus-adapter:
# Thanos' go.mod replaces dependencies (its own Prometheus fork among them), and replace
# directives only apply in the main module. The module cache is read-only, which
# `-mod=readonly` respects; its go.sum pins every dependency.
(cd "$source_dir" && GOFLAGS="-mod=readonly -buildvcs=false" \
  go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=${THANOS_VERSION#v}" \
    -o "$OUT/thanos.tmp" ./cmd/thanos)
mv "$OUT/thanos.tmp" "$OUT/thanos"

echo "$OUT"
