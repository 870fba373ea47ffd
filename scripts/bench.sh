#!/usr/bin/env bash
# metrics-registry (cluster mode, release binary) against prometheus-adapter v0.12.0 and
# the raw Prometheus queries, each target printed next to its measurement. Loopback only:
# an exporter, Prometheus (Debian package), etcd + kube-apiserver without a node, both
# servers over HTTPS with one bearer token. Builds what it needs the first time
# (scripts/build-k8s.sh, scripts/build-adapter.sh); about 5 minutes once built.
#   bash scripts/bench.sh           the full run (10,000 pods, 1,000 services and definitions)
#   bash scripts/bench.sh --smoke   starts everything, checks every server answers every
#                                   load correctly, runs each load for a second; no targets judged
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The tool finds the release binary next to itself (or METRICS_REGISTRY_BIN when set).
cargo build --release --locked -q -p metrics-registry --bin metrics-registry
cargo run --release --locked -q -p metrics-registry-tests --bin bench -- "$@"
