#!/bin/sh
# /init of a Paddock test VM (User-Mode Linux). The root is the host's own,
# shared read-only through hostfs; a tmpfs overlay makes it writable inside
# the VM, so host-built binaries run unchanged and nothing reaches the host.
# The kernel passes these from its command line:
#   paddock_name  hostname          paddock_addr  address/prefix on vec0
#   paddock_chan  host directory of the command channel (read-write)
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
modules=/usr/lib/uml/modules/$(uname -r)

fail() { echo "paddock-vm: $*" >&2; poweroff -f; }

if [ "${1:-}" != --in-overlay ]; then
	mount -t tmpfs -o mode=755 overlay /run || fail "tmpfs for the overlay"
	mkdir -p /run/overlay/upper /run/overlay/work /run/overlay/root
	/bin/busybox insmod "$modules/kernel/fs/overlayfs/overlay.ko" || fail "loading overlay"
	mount -t overlay root -o lowerdir=/,upperdir=/run/overlay/upper,workdir=/run/overlay/work \
		/run/overlay/root || fail "mounting the overlay root"
	exec chroot /run/overlay/root /bin/sh "$0" --in-overlay
fi

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t tmpfs run /run
mkdir -p /run/lock
echo "$paddock_name" > /proc/sys/kernel/hostname

# The UML kernel's modules, and busybox's tools for them (the host may have
# no kmod; busybox's modprobe ignores softdeps, hence crc32c first).
ln -sfn "$(dirname "$modules")" /usr/lib/modules
for tool in modprobe insmod rmmod lsmod; do
	ln -sf /bin/busybox "/usr/sbin/$tool"
done
modprobe crc32c_generic
modprobe -a overlay dummy veth bridge nf_conntrack nf_nat iptable_filter iptable_nat \
	iptable_mangle xt_comment xt_mark xt_conntrack xt_addrtype xt_MASQUERADE xt_nat \
	xt_statistic xt_set xt_ipvs xt_physdev xt_tcpudp ip_set ip_set_hash_ip \
	ip_set_hash_ipport ip_set_hash_ipportip ip_set_hash_ipportnet ip_set_hash_net \
	ip_set_bitmap_port ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_sh \
	|| echo "paddock-vm: some modules did not load" >&2

# This kernel has no nf_tables for IPv4: iptables means iptables-legacy here,
# and the hint chain says so to whoever detects the flavour, as the kubelet
# of a legacy host would.
for t in iptables ip6tables; do
	for v in "" -save -restore; do
		ln -sf "/usr/sbin/$t-legacy$v" "/etc/alternatives/$t$v"
	done
done
iptables-legacy -t mangle -N KUBE-IPTABLES-HINT

ip link set lo up
ip link set vec0 up || fail "no vec0 network device"
ip addr add "$paddock_addr" dev vec0 || fail "adding $paddock_addr"
# As on any Kubernetes node: a default route (the lab's namespace, .1) and
# forwarding on.
ip route add default via "${paddock_addr%.*}.1"
sysctl -qw net.ipv4.ip_forward=1

mkdir -p /run/paddock-vm
mount -t hostfs hostfs /run/paddock-vm -o "$paddock_chan" || fail "mounting the command channel"
cd /
exec /bin/busybox sh "$(dirname "$0")/agent.sh" /run/paddock-vm
