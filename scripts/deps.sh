#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Paddock needs, as root, idempotently.
#   scripts/deps.sh run    what `make run` needs: build tools, iptables, CNI plugins
#   scripts/deps.sh test   plus what the test suite needs: registry, image tools,
#                          containerd + runc, UML, and kubectl 1.20.2 beside the installed one
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_PACKAGES=(build-essential pkg-config protobuf-compiler libseccomp-dev
  iptables iproute2 ipset conntrack containernetworking-plugins curl)
TEST_PACKAGES=(docker-registry skopeo umoci busybox-static jq
  containerd runc crun hyperfine wrk ipvsadm user-mode-linux)

want=("${RUN_PACKAGES[@]}")
[ "${1:-run}" = test ] && want+=("${TEST_PACKAGES[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  # policy-rc.d keeps services (containerd, docker-registry) from starting on install
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust (https://rustup.rs), then run this again" >&2
  exit 1
fi

if [ "${1:-run}" = test ]; then
  # kubectl 1.20.2, the original lab's client, unpacked privately so it does
  # not replace a newer kubectl on PATH.
  dir=target/tools/kubectl-1.20
  if [ ! -x "$dir/usr/bin/kubectl" ]; then
    mkdir -p "$dir"
    (cd "$dir" && apt-get download -qq kubernetes-client && dpkg-deb -x kubernetes-client_*.deb . && rm -f kubernetes-client_*.deb)
  fi
  if ! command -v kubectl >/dev/null; then
    echo "kubectl (1.32 or newer) is missing from PATH; the suite drives stock kubectl" >&2
    exit 1
  fi
fi
