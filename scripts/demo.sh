#!/usr/bin/env bash
# The main job: seed 000–002 live on a real control plane — Prometheus latency, the
# real HPA controller, metrics-registry behind the aggregator. Builds what it needs the
# first time (the Kubernetes components take several minutes), then stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "==> Kubernetes control plane (built once from their Go modules, then cached)"
K8S_BIN_DIR="$(bash scripts/build-k8s.sh | tail -1)"
export K8S_BIN_DIR
echo "==> building metrics-registry and the demo"
cargo build --locked -q -p metrics-registry-tests --bin demo
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
METRICS_REGISTRY_LOG="${METRICS_REGISTRY_LOG:-warn}" RUST_LOG="${RUST_LOG:-warn}" "$target_dir/debug/demo"
