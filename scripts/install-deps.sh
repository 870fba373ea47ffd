#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine: Prometheus
# (Debian package) and a Rust toolchain if cargo is missing. Safe to run again.
set -euo pipefail

need_root() { if [ "$(id -u)" -ne 0 ]; then echo sudo; fi; }

if ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then
  echo "==> installing Prometheus (Debian package)"
  $(need_root) apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $(need_root) apt-get install -y -qq prometheus >/dev/null
  # The package starts a system service where an init system runs; tests start their own.
  ($(need_root) systemctl disable --now prometheus >/dev/null 2>&1 || true)
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
echo "==> $(cargo --version)"
