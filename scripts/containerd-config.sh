#!/usr/bin/env bash
# Writes a containerd 1.6 configuration for a Paddock node (`make containerd-config`):
# the CRI plugin with runc on cgroupfs, the CNI network list the Paddock agent
# writes for the node's podCIDR, registry mirrors through certs.d hosts.toml
# files, and the sandbox image registry.k8s.io/pause:3.6 (pulled through the
# mirror, or imported beforehand with `ctr -n k8s.io images import`).
#
#   scripts/containerd-config.sh [DIR]      DIR defaults to /etc/containerd
#
# Environment (defaults in brackets):
#   CONTAINERD_ROOT    [/var/lib/containerd]
#   CONTAINERD_STATE   [/run/containerd]
#   CONTAINERD_SOCKET  [/run/containerd/containerd.sock]
#   CNI_CONF_DIR       [/etc/paddock/cni/net.d]   the agent's --cni-conf-dir
#   CNI_BIN_DIR        [/usr/lib/cni]             Debian's containernetworking-plugins
#   SANDBOX_IMAGE      [registry.k8s.io/pause:3.6]
#   REGISTRY_MIRROR    [none]  e.g. http://192.168.56.1:5000: docker.io and
#                      registry.k8s.io pulls go there first
# Then run containerd with `containerd --config DIR/config.toml` and the agent with
# `--container-runtime-endpoint unix://$CONTAINERD_SOCKET`.
set -euo pipefail

dir=${1:-/etc/containerd}
root=${CONTAINERD_ROOT:-/var/lib/containerd}
state=${CONTAINERD_STATE:-/run/containerd}
socket=${CONTAINERD_SOCKET:-/run/containerd/containerd.sock}
cni_conf=${CNI_CONF_DIR:-/etc/paddock/cni/net.d}
cni_bin=${CNI_BIN_DIR:-/usr/lib/cni}
sandbox=${SANDBOX_IMAGE:-registry.k8s.io/pause:3.6}
mirror=${REGISTRY_MIRROR:-}

mkdir -p "$dir/certs.d"
if [ -n "$mirror" ]; then
  for registry in docker.io registry.k8s.io; do
    mkdir -p "$dir/certs.d/$registry"
    cat > "$dir/certs.d/$registry/hosts.toml" <<HOSTS
server = "https://$registry"

[host."$mirror"]
  capabilities = ["pull", "resolve"]
HOSTS
  done
fi

cat > "$dir/config.toml" <<CONFIG
# containerd for a Paddock node; written by scripts/containerd-config.sh
version = 2
root = "$root"
state = "$state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$socket"

[plugins."io.containerd.internal.v1.opt"]
  path = "$root/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$sandbox"
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # Without CAP_SYS_RESOURCE (some VMs) runc cannot lower a sandbox's OOM score.
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$cni_conf"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "$state/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
CONFIG
echo "wrote $dir/config.toml"
