#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Paddock needs, as root, idempotently.
#   scripts/deps.sh node   what a node needs to run a built paddock: iptables, CNI plugins
#   scripts/deps.sh run    what `make run` needs: that, build tools, Rust, kubectl
#   scripts/deps.sh test   plus what the test suite needs: registry, image tools,
#                          containerd + runc, UML, and kubectl 1.20.2 beside the installed one
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_PACKAGES=(iptables iproute2 ipset conntrack containernetworking-plugins curl ca-certificates)
RUN_PACKAGES=(build-essential pkg-config protobuf-compiler libseccomp-dev "${NODE_PACKAGES[@]}")
TEST_PACKAGES=(docker-registry skopeo umoci busybox-static jq
  containerd runc crun hyperfine wrk ipvsadm user-mode-linux fonts-dejavu-core)

mode=${1:-run}
case $mode in
  node) want=("${NODE_PACKAGES[@]}") ;;
  run) want=("${RUN_PACKAGES[@]}") ;;
  test) want=("${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
  *) echo "usage: $0 node|run|test" >&2; exit 2 ;;
esac
# kubectl to drive the cluster: Debian's kubernetes-client (1.20.2) if none is installed.
if [ "$mode" = run ] && ! command -v kubectl >/dev/null && apt-cache show kubernetes-client >/dev/null 2>&1; then
  want+=(kubernetes-client)
fi

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

[ "$mode" = node ] && exit 0

# Rust: rustup's stable toolchain in ~/.cargo (the Makefile puts it on PATH).
export PATH=$HOME/.cargo/bin:$PATH
if ! command -v cargo >/dev/null; then
  echo "installing Rust with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy ||
    { echo "cargo is missing and rustup failed: install Rust (https://rustup.rs), then run this again" >&2; exit 1; }
fi

if [ "$mode" = test ]; then
  command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
  # kubectl 1.20.2, the original lab's client, unpacked privately so it does
  # not replace a newer kubectl on PATH.
  dir=target/tools/kubectl-1.20
  if [ ! -x "$dir/usr/bin/kubectl" ]; then
    mkdir -p "$dir"
    (cd "$dir" && apt-get download -qq kubernetes-client && dpkg-deb -x kubernetes-client_*.deb . && rm -f kubernetes-client_*.deb)
  fi
  # and a current kubectl on PATH
  if ! command -v kubectl >/dev/null; then
    echo "installing kubectl 1.32 in /usr/local/bin"
    curl -fsSLo /usr/local/bin/kubectl https://dl.k8s.io/release/v1.32.0/bin/linux/amd64/kubectl &&
      chmod +x /usr/local/bin/kubectl ||
      { echo "kubectl (1.32 or newer) is missing from PATH; the suite drives stock kubectl" >&2; exit 1; }
  fi
  minor=$(kubectl version --client -o json | jq -r .clientVersion.minor | tr -dc 0-9)
  if [ "${minor:-0}" -lt 27 ]; then
    echo "kubectl on PATH is 1.$minor; the suite needs 1.27 or newer there (1.20.2 comes from $dir)" >&2
    exit 1
  fi
fi
