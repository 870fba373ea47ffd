# Sourced by the scripts that build or fetch Go modules (build-k8s.sh, build-kubectl.sh,
# build-adapter.sh, build-thanos.sh, fetch-prometheus-operator.sh): the one place that
# finds the Go toolchain, keeps Go's caches in the cache folder outside the clone, and
# reads what `go mod download` unpacked.

CACHE_ROOT="${METRICS_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/metrics-registry}"

# require_go WHY: the Go toolchain on PATH (Debian's or /usr/local/go), or an exit saying
# what needed it.
require_go() {
  if command -v go >/dev/null 2>&1; then return 0; fi
  if [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; return 0; fi
  echo "Go is needed to $1 (install a Go toolchain)" >&2
  exit 1
}

# Static binaries, the local toolchain only (no download of another), caches outside the
# clone shared by every script.
use_go_caches() {
  export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
  export GOCACHE="$CACHE_ROOT/go-build" GOMODCACHE="$CACHE_ROOT/go-mod"
}

# module_file MODULE VERSION FIELD: downloads one module version into the module cache and
# prints one path of `go mod download -json` (FIELD is Dir or GoMod).
module_file() {
  go mod download -json "$1@$2" | sed -n 's/.*"'"$3"'": "\(.*\)".*/\1/p'
}

# module_source MODULE VERSION FILE: downloads one module version and prints the folder
# its files were unpacked into, or exits saying FILE is not in it.
module_source() {
  echo "==> fetching $1 $2" >&2
  local dir
  dir="$(module_file "$1" "$2" Dir)"
  if [ ! -f "$dir/$3" ]; then
    echo "go mod download did not unpack $1@$2 with $3" >&2
    exit 1
  fi
  echo "$dir"
}

# kubernetes_wrapper_module NAME K8S_VERSION: a go.mod requiring k8s.io/kubernetes. That
# module replaces its staging modules with local folders, which `go build` of a dependency
# ignores, so the wrapper pins each of them to the matching v0.x tag.
kubernetes_wrapper_module() {
  local staging_version="v0.${2#v1.}"
  echo "==> resolving k8s.io/kubernetes $2 for $1 (staging modules $staging_version)" >&2
  local gomod
  gomod="$(module_file k8s.io/kubernetes "$2" GoMod)"
  echo "module metrics-registry.local/$1-build"
  echo "go 1.24"
  echo "require k8s.io/kubernetes $2"
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#replace \1 => \1 '"$staging_version"'#p' "$gomod"
}
