#!/usr/bin/env bash
# Builds the container image from ./Containerfile with buildah: a statically linked
# release binary in an empty image, running as a non-root user, fine with a read-only
# root filesystem. Writes an OCI archive into the cache folder (outside the clone) and
# prints its path on the last line.
#
#   IMAGE=localhost/metrics-registry:<version>   the name inside the archive (default)
#   scripts/build-image.sh --push REGISTRY/metrics-registry:<version>
#                                   also push it there (buildah's registry credentials)
#   scripts/build-image.sh --binary only builds the static binary the image holds and
#                                   prints its path (the tests run it as a process)
#
# Or load the archive into a node's containerd: `ctr -n k8s.io images import ARCHIVE`.
set -euo pipefail
cd "$(dirname "$0")/.."
push=""
binary_only=""
case "${1:-}" in
  --push) push="${2:?--push needs a destination like REGISTRY/metrics-registry:TAG}" ;;
  --binary) binary_only=1 ;;
esac

CACHE_ROOT="${METRICS_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/metrics-registry}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
IMAGE="${IMAGE:-localhost/metrics-registry:$VERSION}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE_ROOT/target}"
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v buildah >/dev/null 2>&1; then
  echo "==> installing buildah (Debian package)" >&2
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
  $sudo_ apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq buildah >/dev/null
fi

# An explicit --target keeps build scripts and proc macros dynamic while the binary
# itself links glibc statically (the image has no libc to load).
triple="$(rustc -vV | sed -n 's/^host: //p')"
echo "==> building a static release binary for $triple" >&2
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$triple" -p metrics-registry --bin metrics-registry >&2
binary="$CARGO_TARGET_DIR/$triple/release/metrics-registry"
if readelf -d "$binary" 2>/dev/null | grep -q '(NEEDED)'; then
  echo "$binary is dynamically linked; it would not start in an empty image" >&2
  exit 1
fi
if [ -n "$binary_only" ]; then
  echo "$binary"
  exit 0
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp Containerfile "$binary" "$context/"
out="$CACHE_ROOT/images"
mkdir -p "$out"
archive="$out/metrics-registry-$VERSION.oci.tar"
# Storage of our own under the cache, with the vfs driver: works without overlay
# support or a running daemon, and leaves the host's image store alone.
buildah_=(buildah --root "$CACHE_ROOT/buildah/root" --runroot "$CACHE_ROOT/buildah/run" --storage-driver vfs)
echo "==> buildah: $IMAGE" >&2
"${buildah_[@]}" bud --quiet --isolation chroot --layers=false \
  --label "org.opencontainers.image.version=$VERSION" \
  --label "org.opencontainers.image.title=metrics-registry" \
  -f "$context/Containerfile" -t "$IMAGE" "$context" >&2
rm -f "$archive.tmp"
"${buildah_[@]}" push --quiet "$IMAGE" "oci-archive:$archive.tmp:$IMAGE" >&2
mv "$archive.tmp" "$archive"
echo "==> $(du -h "$archive" | cut -f1) $archive" >&2
if [ -n "$push" ]; then
  echo "==> pushing $IMAGE to $push" >&2
  "${buildah_[@]}" push "$IMAGE" "docker://$push" >&2
fi
echo "$archive"
