#!/usr/bin/env bash
# Fetches prometheus-operator's Go module at a pinned version into the Go module cache
# outside the clone: its `PrometheusRule` CRD is what the PrometheusRule sink is tested
# against. Nothing is built and nothing is copied into the clone. A second run finds it
# and returns at once.
#
# Prints a folder on its last line whose `source` links to the module's files
# (example/prometheus-operator-crd/ holds the CRDs).
set -euo pipefail

OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
MODULE="github.com/prometheus-operator/prometheus-operator"
CACHE_ROOT="${METRICS_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/metrics-registry}"
OUT="$CACHE_ROOT/prometheus-operator/$OPERATOR_VERSION"
CRD="example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"

if command -v go >/dev/null 2>&1; then :; elif [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; else
  echo "Go is needed to fetch prometheus-operator's module (install a Go toolchain)" >&2; exit 1
fi

if [ -f "$OUT/source/$CRD" ]; then echo "$OUT"; exit 0; fi

mkdir -p "$OUT"
export GOFLAGS="-mod=mod" GOTOOLCHAIN=local
export GOCACHE="$CACHE_ROOT/go-build" GOMODCACHE="$CACHE_ROOT/go-mod"

echo "==> fetching $MODULE $OPERATOR_VERSION" >&2
source_dir="$(go mod download -json "$MODULE@$OPERATOR_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
if [ ! -f "$source_dir/$CRD" ]; then
  echo "go mod download did not unpack $MODULE@$OPERATOR_VERSION with $CRD" >&2; exit 1
fi
ln -sfn "$source_dir" "$OUT/source"

echo "$OUT"
