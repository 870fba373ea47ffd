#!/usr/bin/env bash
# Prints issue 7's scale and edge targets next to what the release binary measures:
# 10k definitions (one edit served p50/p99, idle CPU, /healthz p99 during reloads),
# 100k definitions (start to first answer, RSS), slowloris, idle connections, SIGTERM.
# Needs Prometheus (the Debian package); takes about two minutes once built.
set -euo pipefail
cd "$(dirname "$0")/.."
# 10,000 idle connections need as many file descriptors in this process.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The tool finds the release binary next to itself (or METRICS_REGISTRY_BIN when set).
cargo build --release --locked -q -p metrics-registry --bin metrics-registry
cargo run --release --locked -q -p metrics-registry-tests --bin scale-bench
