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
CACHE_ROOT="${METRICS_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/metrics-registry}"
OUT="$CACHE_ROOT/k8s/$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
BINARIES=("${K8S_COMPONENTS[@]}" etcd helm)

if command -v go >/dev/null 2>&1; then :; elif [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; else
  echo "Go is needed to build the Kubernetes components (install a Go toolchain)" >&2; exit 1
fi

all_present() { for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done; }
if all_present; then echo "$OUT"; exit 0; fi

mkdir -p "$OUT"
export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
export GOCACHE="$CACHE_ROOT/go-build" GOMODCACHE="$CACHE_ROOT/go-mod"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# k8s.io/kubernetes replaces its staging modules with local folders, which `go build`
# of a dependency ignores; a wrapper module pins each of them to the matching v0.x tag.
staging_version="v0.${K8S_VERSION#v1.}"
echo "==> resolving k8s.io/kubernetes $K8S_VERSION (staging modules $staging_version)" >&2
gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
mkdir -p "$work/k8s"
{
  echo "module metrics-registry.local/k8s-build"
  echo "go 1.24"
  echo "require k8s.io/kubernetes $K8S_VERSION"
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#replace \1 => \1 '"$staging_version"'#p' "$gomod"
} > "$work/k8s/go.mod"
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
