#!/usr/bin/env bash
# Builds the real Kubernetes binaries the end-to-end tests and the demo use —
# kube-apiserver, kube-controller-manager, kube-scheduler and the kubelet from
# k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, and helm — at pinned versions
# from the Go module proxy, into a cache folder outside the clone. A second run finds
# them and returns at once.
#
# Prints the folder holding the binaries on its last line.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
. "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"
OUT="$CACHE_ROOT/k8s/$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
BINARIES=("${K8S_COMPONENTS[@]}" etcd helm)

require_go "build the Kubernetes components"

all_present() { for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done; }
if all_present; then echo "$OUT"; exit 0; fi

mkdir -p "$OUT"
use_go_caches
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/k8s"
kubernetes_wrapper_module k8s "$K8S_VERSION" > "$work/k8s/go.mod"
# Keep the versions k8s.io/kubernetes itself was tested with.
(cd "$work/k8s" && { printf 'package tools\nimport (\n'; for c in "${K8S_COMPONENTS[@]}"; do printf ' _ "k8s.io/kubernetes/cmd/%s/app"\n' "$c"; done; printf ')\n'; } > tools.go \
  && go mod tidy >/dev/null 2>&1 || true)
for component in "${K8S_COMPONENTS[@]}"; do
  if [ ! -x "$OUT/$component" ]; then
    echo "==> building $component $K8S_VERSION (several minutes the first time)" >&2
    (cd "$work/k8s" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" \
      -o "$OUT/$component.tmp" "k8s.io/kubernetes/cmd/$component")
    mv "$OUT/$component.tmp" "$OUT/$component"
  fi
done

if [ ! -x "$OUT/etcd" ]; then
  echo "==> building etcd $ETCD_VERSION" >&2
  mkdir -p "$work/etcd"
  (cd "$work/etcd" && printf 'module metrics-registry.local/etcd-build\ngo 1.24\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod \
    && printf 'package tools\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go \
    && go mod tidy >/dev/null 2>&1 || true)
  (cd "$work/etcd" && go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$OUT/etcd.tmp" "$OUT/etcd"
fi

if [ ! -x "$OUT/helm" ]; then
  echo "==> building helm $HELM_VERSION" >&2
  mkdir -p "$work/helm"
  (cd "$work/helm" && printf 'module metrics-registry.local/helm-build\ngo 1.24\nrequire helm.sh/helm/v3 %s\n' "$HELM_VERSION" > go.mod \
    && printf 'package tools\nimport _ "helm.sh/helm/v3/cmd/helm"\n' > tools.go \
    && go mod tidy >/dev/null 2>&1 || true)
  (cd "$work/helm" && go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    -o "$OUT/helm.tmp" helm.sh/helm/v3/cmd/helm)
  mv "$OUT/helm.tmp" "$OUT/helm"
fi

all_present
echo "$OUT"
