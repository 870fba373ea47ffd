#!/usr/bin/env bash
# Runs every test: chart checks, formatting, lints, unit tests, the integration tests
# against a real Prometheus and the end-to-end tests on a real control plane (whose
# binaries are built from their Go modules the first time). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "==> Kubernetes control plane and helm (built once from their Go modules, then cached)"
K8S_BIN_DIR="$(bash scripts/build-k8s.sh | tail -1)"
export K8S_BIN_DIR
echo "==> helm lint / helm template"
"$K8S_BIN_DIR/helm" lint charts/metrics-registry
"$K8S_BIN_DIR/helm" template metrics-registry charts/metrics-registry --namespace metrics-registry > /dev/null

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast -- --show-output 2>&1 | tee "$log" || status=$?
# One total over every test binary, so the last line is not a doc-test run of zero.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
