#!/usr/bin/env bash
# The local cluster of docs/getting-started.md: the real control plane and node the tests
# use (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd and the
# kubelet), metrics-registry's image loaded into the node, a demo app and a Prometheus
# scraping it; then a shell with kubectl and helm for that cluster. `exit` stops it all.
#
# Needs root on a Debian machine with Rust and Go toolchains; builds what it needs the
# first time (the Kubernetes binaries, kubectl, helm and the image: 20 minutes or more on
# two cores), later runs start in about ten seconds. The cluster lives in network and
# mount namespaces of its own (scripts/in-test-namespace.sh) and reaches nothing outside.
# Standard input that is not a terminal is run by that shell as a script.
set -euo pipefail
cd "$(dirname "$0")/.."
# Standard input is the shell's: the steps before it read nothing and print to stderr.
exec 3<&0 </dev/null 4>&1 >&2
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "==> Kubernetes components, kubectl and helm (built once from their Go modules, then cached)"
K8S_BIN_DIR="$(bash scripts/build-kubectl.sh | tail -1)"
export K8S_BIN_DIR
echo "==> images: metrics-registry and the node's pause/workload images"
if [ -z "${METRICS_REGISTRY_IMAGE_ARCHIVE:-}" ]; then
  METRICS_REGISTRY_IMAGE_ARCHIVE="$(bash scripts/build-image.sh | tail -1)"
fi
export METRICS_REGISTRY_IMAGE_ARCHIVE
bash scripts/build-test-images.sh >/dev/null
echo "==> building the local cluster's launcher"
cargo build --locked -q -p metrics-registry-tests --bin local-cluster
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
METRICS_REGISTRY_LOG="${METRICS_REGISTRY_LOG:-warn}" RUST_LOG="${RUST_LOG:-warn}" \
  exec bash scripts/in-test-namespace.sh "$target_dir/debug/local-cluster" <&3 >&4 3<&- 4>&-
