#!/usr/bin/env bash
# Builds Paddock's test images from Debian packages (no internet) and fills a
# docker-registry storage directory with them. Run as root; idempotent: a
# second run with unchanged inputs does nothing.
#
#   tests/images/build.sh [OUT]      OUT defaults to target/images
#
# OUT/oci/{nginx,pause,busybox}   OCI layouts (umoci), tags latest / 3.6 / latest
# OUT/registry                    docker-registry storage (rootdirectory) holding
#     library/nginx:latest        docker.io/library/nginx:latest through a mirror
#     library/busybox:latest      docker.io/library/busybox:latest (gzip layers)
#     library/busybox:zstd        the same with zstd layers
#     library/busybox:multi       an OCI image index: linux/amd64 is busybox,
#                                 linux/arm64 the pause image (must be passed over)
#     pause:3.6                   registry.k8s.io/pause:3.6 through a mirror
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${1:-target/images}")

inputs=$(cat "$here"/build.sh "$here"/pause.c "$here"/nginx.conf "$here"/index.html | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs" ]; then
  echo "test images up to date in $out"
  exit 0
fi

for tool in umoci skopeo docker-registry gcc busybox; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/deps.sh test" >&2; exit 1; }
done

rm -rf "$out/oci" "$out/registry" "$out/work" "$out/.inputs"
mkdir -p "$out/oci" "$out/registry" "$out/work" "$out/debs"
work=$out/work

# umoci: an image from a root filesystem directory, one layer. (unpack +
# repack: `umoci insert` 0.4.7 leaves the layer's tar unterminated.)
package() { # name tag rootfs umoci-config-args...
  local name=$1 tag=$2 rootfs=$3; shift 3
  local layout=$out/oci/$name bundle=$work/bundle-$name
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
  cp -a "$rootfs/." "$bundle/rootfs/"
  umoci repack --image "$layout:$tag" "$bundle"
  umoci config --image "$layout:$tag" --architecture amd64 --os linux "$@"
  umoci gc --layout "$layout"
}

### pause: a static binary, run as 65535 like upstream's.
rootfs=$work/pause
mkdir -p "$rootfs"
gcc -static -Os -s -o "$rootfs/pause" "$here/pause.c"
package pause 3.6 "$rootfs" --config.entrypoint /pause --config.user 65535:65535

### busybox: Debian's busybox-static with every applet linked.
rootfs=$work/busybox
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,var/www,dev,proc,sys}
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
busybox --list-full | while read -r applet; do
  [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
package busybox latest "$rootfs" --config.cmd sh --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin

### nginx: Debian's nginx binary with the libraries it links.
debs=$out/debs
if ! ls "$debs"/nginx_*.deb "$debs"/nginx-common_*.deb >/dev/null 2>&1; then
  (cd "$debs" && apt-get download -qq nginx nginx-common)
fi
extracted=$work/nginx-debs
for deb in "$debs"/nginx_*.deb "$debs"/nginx-common_*.deb; do dpkg-deb -x "$deb" "$extracted"; done
rootfs=$work/nginx
mkdir -p "$rootfs"/{etc/nginx,usr/sbin,usr/share/nginx/html,var/log/nginx,var/lib/nginx,var/cache/nginx,run,tmp,dev,proc,sys}
chmod 1777 "$rootfs/tmp"
cp "$extracted/usr/sbin/nginx" "$rootfs/usr/sbin/nginx"
for lib in $(ldd "$extracted/usr/sbin/nginx" | grep -o '/[^ ]*'); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp "$extracted/etc/nginx/mime.types" "$rootfs/etc/nginx/mime.types"
cp "$here/nginx.conf" "$rootfs/etc/nginx/nginx.conf"
cp "$here/index.html" "$rootfs/usr/share/nginx/html/index.html"
printf 'root:x:0:0:root:/root:/sbin/nologin\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
chown 33:33 "$rootfs/var/lib/nginx" "$rootfs/var/cache/nginx"
package nginx latest "$rootfs" --config.entrypoint /usr/sbin/nginx --config.exposedports 80/tcp \
  --config.stopsignal SIGQUIT --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

### busybox:multi: an image index over busybox (amd64) and pause (arm64).
multi=$work/busybox-multi
cp -a "$out/oci/busybox" "$multi"
cp -n "$out/oci/pause/blobs/sha256/"* "$multi/blobs/sha256/"
entry() { # layout platform-architecture
  jq -c --arg arch "$2" '.manifests[0] | del(.annotations) + {platform: {architecture: $arch, os: "linux"}}' "$1/index.json"
}
index=$(jq -cn --argjson arm "$(entry "$out/oci/pause" arm64)" --argjson amd "$(entry "$out/oci/busybox" amd64)" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [$arm, $amd]}')
digest=$(printf '%s' "$index" | sha256sum | cut -d' ' -f1)
printf '%s' "$index" > "$multi/blobs/sha256/$digest"
jq -cn --arg d "sha256:$digest" --argjson size "${#index}" \
  '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $size,
    annotations: {"org.opencontainers.image.ref.name": "multi"}}]}' > "$multi/index.json"

### registry storage: push through a docker-registry on the loopback of a
### private network namespace, so nothing listens in the host's.
cat > "$work/registry.yml" <<CONF
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: $out/registry } }
http: { addr: 127.0.0.1:5000 }
CONF
unshare --net bash -euo pipefail -c '
  ip link set lo up
  docker-registry serve "$1/registry.yml" >"$1/registry.log" 2>&1 &
  registry=$!
  trap "kill $registry; wait $registry 2>/dev/null || true" EXIT
  for _ in $(seq 100); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.05; done
  copy() { skopeo copy -q --dest-tls-verify=false "$@"; }
  copy oci:"$2"/nginx:latest docker://127.0.0.1:5000/library/nginx:latest
  copy oci:"$2"/busybox:latest docker://127.0.0.1:5000/library/busybox:latest
  copy --dest-compress --dest-compress-format zstd oci:"$2"/busybox:latest oci:"$1"/busybox-zstd:zstd
  copy --preserve-digests oci:"$1"/busybox-zstd:zstd docker://127.0.0.1:5000/library/busybox:zstd
  copy oci:"$2"/pause:3.6 docker://127.0.0.1:5000/pause:3.6
  copy --all oci:"$1"/busybox-multi:multi docker://127.0.0.1:5000/library/busybox:multi
' registry "$work" "$out/oci"

rm -rf "$work"
echo "$inputs" > "$out/.inputs"
echo "test images built in $out"
