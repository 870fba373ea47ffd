#!/usr/bin/env bash
# Builds kubectl from k8s.io/kubernetes at the version of the other Kubernetes components
# (scripts/build-k8s.sh builds those first) into the same cache folder, so a machine
# without kubectl can follow docs/getting-started.md on the local cluster. A second run
# finds it and returns at once.
#
# Prints the folder holding the binaries (kubectl included) on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="$(bash scripts/build-k8s.sh | tail -1)"
if [ -x "$OUT/kubectl" ]; then echo "$OUT"; exit 0; fi

# The version the components were built at, so kubectl matches the API server exactly.
K8S_VERSION="$("$OUT/kube-apiserver" --version | awk '{print $2}')"
. scripts/go-env.sh
require_go "build kubectl"
use_go_caches
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

kubernetes_wrapper_module kubectl "$K8S_VERSION" > "$work/go.mod"
(cd "$work" && printf 'package tools\nimport _ "k8s.io/kubernetes/cmd/kubectl"\n' > tools.go \
  && go mod tidy >/dev/null 2>&1 || true)
echo "==> building kubectl $K8S_VERSION (a few minutes the first time)" >&2
(cd "$work" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
  -o "$OUT/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl)
mv "$OUT/kubectl.tmp" "$OUT/kubectl"
echo "$OUT"
