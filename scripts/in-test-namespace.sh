#!/usr/bin/env bash
# Runs a command in network and mount namespaces of its own, as the tests with a real
# node need: the test clusters add private addresses and a pod bridge there (never to
# the machine's network), and every mount the kubelet and containerd make goes away
# with the namespace. Loopback is up; nothing inside can reach outside, so build and
# install everything before (scripts/test.sh does).
#
#   scripts/in-test-namespace.sh cargo test --offline -p metrics-registry-tests
set -euo pipefail
if [ "${METRICS_REGISTRY_TEST_NETNS:-}" != inside ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "$0: needs root (network namespaces, cgroups and containerd for the test node)" >&2
    exit 1
  fi
  exec unshare --net --mount --propagation private --fork \
    env METRICS_REGISTRY_TEST_NETNS=inside bash "$0" "$@"
fi
ip link set lo up
# containerd creates pod network namespaces here; keep them inside our mount namespace.
mkdir -p /run/netns
exec "$@"
