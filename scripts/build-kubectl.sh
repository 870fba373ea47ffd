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
CACHE_ROOT="${METRICS_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/metrics-registry}"
if command -v go >/dev/null 2>&1; then :; elif [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; else
  echo "Go is needed to build kubectl (install a Go toolchain)" >&2; exit 1
fi
export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
export GOCACHE="$CACHE_ROOT/go-build" GOMODCACHE="$CACHE_ROOT/go-mod"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# As in build-k8s.sh: k8s.io/kubernetes replaces its staging modules with local folders,
# so a wrapper module pins each of them to the matching v0.x tag.
staging_version="v0.${K8S_VERSION#v1.}"
echo "==> resolving k8s.io/kubernetes $K8S_VERSION for kubectl (staging modules $staging_version)" >&2
gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
{
  echo "module metrics-registry.local/kubectl-build"
  echo "go 1.24"
  echo "require k8s.io/kubernetes $K8S_VERSION"
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#replace \1 => \1 '"$staging_version"'#p' "$gomod"
} > "$work/go.mod"
(cd "$work" && printf 'package tools\nimport _ "k8s.io/kubernetes/cmd/kubectl"\n' > tools.go \
  && go mod tidy >/dev/null 2>&1 || true)
echo "==> building kubectl $K8S_VERSION (a few minutes the first time)" >&2
(cd "$work" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
  -o "$OUT/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl)
mv "$OUT/kubectl.tmp" "$OUT/kubectl"
echo "$OUT"
