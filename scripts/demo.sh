#!/usr/bin/env bash
# The main job: seed 000–002 live, through the chart as users install it — a real control
# plane and node, `helm install` of charts/metrics-registry with the image built here,
# Prometheus latency, the real HPA controller. Builds what it needs the first time (the
# Kubernetes components and the image take several minutes), then stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "==> Kubernetes components and helm (built once from their Go modules, then cached)"
K8S_BIN_DIR="$(bash scripts/build-k8s.sh | tail -1)"
export K8S_BIN_DIR
echo "==> images: metrics-registry (static binary, buildah) and the node's pause/workload images"
METRICS_REGISTRY_IMAGE_ARCHIVE="$(bash scripts/build-image.sh | tail -1)"
export METRICS_REGISTRY_IMAGE_ARCHIVE
bash scripts/build-test-images.sh >/dev/null
echo "==> building the demo"
cargo build --locked -q -p metrics-registry-tests --bin demo
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
# The cluster gets private addresses and a pod bridge in a network namespace of its own.
METRICS_REGISTRY_LOG="${METRICS_REGISTRY_LOG:-warn}" RUST_LOG="${RUST_LOG:-warn}" \
  bash scripts/in-test-namespace.sh "$target_dir/debug/demo"
