#!/usr/bin/env bash
# metrics-registry without a cluster: Prometheus + an exporter + `metrics-registry run
# --manifests`, printing answers of both metrics APIs and a live edit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "==> building metrics-registry and the demo"
# The demo finds metrics-registry next to itself (or METRICS_REGISTRY_BIN when set).
cargo build --locked -q -p metrics-registry --bin metrics-registry
cargo run --locked -q -p metrics-registry-tests --bin standalone-demo
