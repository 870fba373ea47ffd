#!/usr/bin/env bash
# Runs every test: chart checks, formatting, lints, unit tests, the integration tests
# against a real Prometheus and the end-to-end tests on a real control plane and node
# (whose binaries are built from their Go modules the first time), with the image users
# install; then the benchmark's smoke run and a bounded fuzzing run. Installs what it
# needs first. A plain `cargo test` lists every test that needs Prometheus, the Go-built
# control plane, a node or another outside program as ignored, with the reason; this
# script runs them all (`--include-ignored`), those that need a node in network and mount
# namespaces of their own (scripts/in-test-namespace.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
# One build folder for everything this script builds (the tests, the image's static
# binary, the benchmark), outside the clone like the other caches, so a second run is
# fast and every step finds the binaries where the step before put them.
cache="${METRICS_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/metrics-registry}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
# Incremental state would only grow the shared build folder: every run builds what changed.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
mkdir -p "$CARGO_TARGET_DIR"

echo "==> Kubernetes components, kubectl and helm (built once from their Go modules, then cached)"
K8S_BIN_DIR="$(bash scripts/build-kubectl.sh | tail -1)"
export K8S_BIN_DIR
echo "==> prometheus-adapter (the baseline the migration tests compare against; built once)"
ADAPTER_DIR="$(bash scripts/build-adapter.sh | tail -1)"
export ADAPTER_DIR
echo "==> Thanos (Query in front of Prometheus, for the backend tests; built once)"
THANOS_DIR="$(bash scripts/build-thanos.sh | tail -1)"
export THANOS_DIR
echo "==> prometheus-operator's module (its PrometheusRule CRD, for the rule sink tests; fetched once)"
PROMETHEUS_OPERATOR_DIR="$(bash scripts/fetch-prometheus-operator.sh | tail -1)"
export PROMETHEUS_OPERATOR_DIR
echo "==> images: metrics-registry (Containerfile, buildah) and the test node's pause/workload images"
METRICS_REGISTRY_IMAGE_ARCHIVE="$(bash scripts/build-image.sh | tail -1)"
export METRICS_REGISTRY_IMAGE_ARCHIVE
# The image's static release binary, for the tests and the benchmark that run it as a
# process (its memory is measured; a debug build's would say nothing). Already built by
# the step above; the script says where it put it.
METRICS_REGISTRY_BIN="$(bash scripts/build-image.sh --binary | tail -1)"
export METRICS_REGISTRY_BIN
bash scripts/build-test-images.sh >/dev/null

echo "==> helm lint / helm template"
helm="$K8S_BIN_DIR/helm"
"$helm" lint charts/metrics-registry
for values in "" "--set serviceMonitor.enabled=true" "--set tls.mode=certManager" "--set tls.mode=secret --set tls.secretName=s --set tls.caBundle=PEM" "--set hostNetwork=true" "--set resourceMetrics.enabled=true"; do
  # shellcheck disable=SC2086
  "$helm" template metrics-registry charts/metrics-registry --namespace metrics-registry $values > /dev/null
done

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
# Built outside: the test namespace has no route to anywhere.
cargo test --workspace --locked --no-run -q
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
bash scripts/in-test-namespace.sh \
  cargo test --workspace --locked --offline --no-fail-fast -- --include-ignored --show-output 2>&1 | tee "$log" || status=$?
echo "==> benchmark smoke (scripts/bench.sh --smoke: every server answers every load; no targets judged)"
# The image's static release binary is the one measured; the load generator is the debug
# build cargo test made, so its numbers here are not the benchmark's.
bash scripts/in-test-namespace.sh "$CARGO_TARGET_DIR/debug/bench" --smoke 2>&1 | tee -a "$log" || status=$?
echo "==> fuzzing (AFL++ through cargo-afl, a bounded run per target)"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" CARGO_TARGET_DIR="$cache/target-fuzz" bash scripts/fuzz.sh 2>&1 | tee -a "$log" || status=$?
# One total over every test binary, so the last line is not a doc-test run of zero.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) g += $i } }
     END { printf "total: %d passed, %d failed, %d ignored\n", p, f, g }' "$log"
# The failures by name, last, so they are what a truncated log still shows.
if grep -q -e '^test .* FAILED$' -e '^Error: ' "$log"; then
  echo "failed:"
  grep -e '^test .* FAILED$' -e '^Error: ' "$log" | sed 's/^/  /'
fi
exit "$status"
