#!/usr/bin/env bash
# Builds the two images the test node needs besides metrics-registry's own, since none
# can be pulled: the pod sandbox ("pause") image and a workload image. Both are
# busybox-static in an empty image. Writes OCI archives into the cache folder and
# prints that folder on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_ROOT="${METRICS_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/metrics-registry}"
out="$CACHE_ROOT/images"
busybox="$(command -v busybox || true)"
if [ -z "$busybox" ] || readelf -d "$busybox" 2>/dev/null | grep -q '(NEEDED)'; then
  echo "==> installing busybox-static (Debian package)" >&2
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
  $sudo_ apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq busybox-static >/dev/null
  busybox=/bin/busybox
fi
stamp="$(sha256sum "$busybox" | cut -c1-12)"
if [ -f "$out/pause.oci.tar" ] && [ -f "$out/workload.oci.tar" ] && [ "$(cat "$out/test-images.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$out"; exit 0
fi

mkdir -p "$out"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$busybox" "$context/busybox"
buildah_=(buildah --root "$CACHE_ROOT/buildah/root" --runroot "$CACHE_ROOT/buildah/run" --storage-driver vfs)
build() { # name entrypoint-json
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT %s\n' "$2" > "$context/Containerfile"
  "${buildah_[@]}" bud --quiet --isolation chroot --layers=false -f "$context/Containerfile" -t "$1" "$context" >&2
}
# The sandbox only has to exist and stay up; containerd stops it with SIGKILL.
build localhost/pause:test '["/bin/busybox", "sleep", "2147483647"]'
# Workloads run a command given by the pod; exits promptly on SIGTERM.
build localhost/workload:test '["/bin/busybox", "sh", "-c", "trap \"exit 0\" TERM; while true; do sleep 1; done"]'
"${buildah_[@]}" push --quiet localhost/pause:test "oci-archive:$out/pause.oci.tar.tmp:localhost/pause:test" >&2
"${buildah_[@]}" push --quiet localhost/workload:test "oci-archive:$out/workload.oci.tar.tmp:localhost/workload:test" >&2
mv "$out/pause.oci.tar.tmp" "$out/pause.oci.tar"
mv "$out/workload.oci.tar.tmp" "$out/workload.oci.tar"
echo "$stamp" > "$out/test-images.stamp"
echo "$out"
