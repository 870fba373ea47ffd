#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine, from Debian's
# packages: Prometheus and VictoriaMetrics (a second backend); buildah for the images;
# containerd, runc and the CNI plugins for the test node; busybox-static for its pause
# and workload images; iproute2.
# A Rust toolchain and Go must be present. Safe to run again.
set -euo pipefail

need_root() { if [ "$(id -u)" -ne 0 ]; then echo sudo; fi; }

# command (or file) → Debian package
declare -A needed=(
  [prometheus]=prometheus
  [victoria-metrics]=victoria-metrics
  [buildah]=buildah
  [containerd]=containerd
  [runc]=runc
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [/bin/busybox]=busybox-static
  [ip]=iproute2
)
missing=()
for what in "${!needed[@]}"; do
  if [[ "$what" == /* ]]; then [ -e "$what" ] && continue; else command -v "$what" >/dev/null 2>&1 && continue; fi
  missing+=("${needed[$what]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  $(need_root) apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $(need_root) apt-get install -y -qq "${missing[@]}" >/dev/null
  # The packages start system services where an init system runs; tests start their own.
  for service in prometheus victoria-metrics containerd; do
    ($(need_root) systemctl disable --now "$service" >/dev/null 2>&1 || true)
  done
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "cargo not found: install a Rust toolchain (rustup) first" >&2
    exit 1
  fi
fi
echo "==> $(prometheus --version 2>&1 | head -1)"
echo "==> $(containerd --version 2>&1 | head -1); $(buildah --version 2>&1 | head -1)"
echo "==> $(cargo --version)"
