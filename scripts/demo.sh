#!/usr/bin/env bash
# The main job: Prometheus + an exporter + metrics-registry, answering both metrics APIs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "==> building metrics-registry and the demo"
cargo build --locked -q -p metrics-registry --bin metrics-registry -p metrics-registry-tests --bin demo
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
METRICS_REGISTRY_BIN="$target_dir/debug/metrics-registry" "$target_dir/debug/demo"
