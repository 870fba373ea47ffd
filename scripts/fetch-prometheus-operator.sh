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
. "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"
OUT="$CACHE_ROOT/prometheus-operator/$OPERATOR_VERSION"
CRD="example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"

require_go "fetch prometheus-operator's module"

if [ -f "$OUT/source/$CRD" ]; then echo "$OUT"; exit 0; fi

mkdir -p "$OUT"
use_go_caches

source_dir="$(module_source "$MODULE" "$OPERATOR_VERSION" "$CRD")"
ln -sfn "$source_dir" "$OUT/source"

echo "$OUT"
