#!/usr/bin/env bash
# metrics-registry without a cluster: Prometheus + an exporter + `metrics-registry run
# --manifests`, printing answers of both metrics APIs and a live edit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "==> building metrics-registry and the demo"
cargo build --locked -q -p metrics-registry --bin metrics-registry -p metrics-registry-tests --bin standalone-demo
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
METRICS_REGISTRY_BIN="$target_dir/debug/metrics-registry" "$target_dir/debug/standalone-demo"
