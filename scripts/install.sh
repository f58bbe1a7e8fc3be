#!/usr/bin/env bash
# Installs a built paddock binary as a service, as root (what `make install`
# does after the release build; the Vagrant lab's workers run it alone):
#   /usr/local/bin/paddock
#   /etc/systemd/system/paddock-{server,agent}.service
#   /etc/default/paddock-{server,agent}      (kept if they exist)
#   /usr/local/share/doc/paddock/README.md
# DESTDIR installs below another root instead (packaging, tests).
#
#   scripts/install.sh [BINARY]      BINARY defaults to target/release/paddock
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/paddock}
root=${DESTDIR:-}

[ -x "$binary" ] || { echo "$binary is missing: run make build-release" >&2; exit 1; }
# Stripped: the release build keeps line tables for backtraces (~340 MB), the
# installed binary does not (~53 MB).
install -D -s -m 0755 "$binary" "$root/usr/local/bin/paddock"
for unit in paddock-server paddock-agent; do
  install -D -m 0644 "deploy/systemd/$unit.service" "$root/etc/systemd/system/$unit.service"
  [ -e "$root/etc/default/$unit" ] || install -D -m 0600 "deploy/systemd/$unit.default" "$root/etc/default/$unit"
done
install -D -m 0644 README.md "$root/usr/local/share/doc/paddock/README.md"
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "installed paddock in $root/usr/local/bin"
echo "  a server (master): systemctl enable --now paddock-server"
echo "  an agent (worker): set PADDOCK_URL and PADDOCK_TOKEN in /etc/default/paddock-agent,"
echo "                     then systemctl enable --now paddock-agent"
