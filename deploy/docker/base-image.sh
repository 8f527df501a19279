#!/usr/bin/env bash
# A local base image for deploy/docker/Dockerfile where no image registry is reachable (the
# project's machines): Debian 12 (debootstrap --variant=minbase from the machine's apt mirror) plus
# the Node and npm that deploy/local/node.sh pins, where the official node image keeps them
# (/usr/local/bin, /usr/local/include/node, /usr/local/lib/node_modules/npm), made with
# `docker import`. The Debian rootfs is cached as a tarball in .cache/docker-base.
#   deploy/docker/base-image.sh     build ktrail/node-base:<node>-bookworm unless present;
#                                   prints the image name last
# KTRAIL_DEBIAN_MIRROR: another Debian mirror (default: the first of this machine's apt sources).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=deploy/local/node-env.sh
. "$ROOT/deploy/local/node-env.sh"
# The machine's own Debian mirror: the first URIs of a deb822 source, else of a one-line one.
apt_mirror() {
  local uri
  uri="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v -- '-security' | head -1 || true)"
  [ -n "$uri" ] || uri="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1 || true)"
  echo "$uri"
}
MIRROR="${KTRAIL_DEBIAN_MIRROR:-$(apt_mirror)}"
CACHE="$ROOT/.cache/docker-base"
ROOTFS_TAR="$CACHE/bookworm-minbase.tar"
say() { echo "[base-image] $*" >&2; }
die() {
  echo "[base-image] ERROR: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, docker)"
[ -n "$MIRROR" ] || die "no Debian mirror in this machine's apt sources: set KTRAIL_DEBIAN_MIRROR"
bash "$ROOT/deploy/local/node.sh" install >&2
NODE_VERSION="$(bash "$ROOT/deploy/local/node.sh" version)"
IMAGE="ktrail/node-base:$NODE_VERSION-bookworm"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "$IMAGE already present"
  echo "$IMAGE"
  exit 0
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ktrail-base.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$ROOTFS_TAR" ]; then
  command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install -y debootstrap"
  say "debootstrap --variant=minbase bookworm from $MIRROR (a few minutes)"
  debootstrap --variant=minbase bookworm "$tmp/rootfs" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -n 20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
  mkdir -p "$CACHE"
  tar -C "$tmp/rootfs" -cf "$ROOTFS_TAR.tmp" . && mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf "$tmp/rootfs"
  say "rootfs cached in $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
fi

say "import $IMAGE: the cached rootfs + Node $NODE_VERSION from $KTRAIL_NODE_HOME"
mkdir -p "$tmp/rootfs"
tar -C "$tmp/rootfs" -xf "$ROOTFS_TAR"
cp -a "$KTRAIL_NODE_HOME/bin" "$KTRAIL_NODE_HOME/include" "$KTRAIL_NODE_HOME/lib" "$tmp/rootfs/usr/local/"
changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["node"]')
# A machine whose Node trusts extra CAs (a TLS-inspecting egress proxy) needs them in the
# image too, or npm ci in the build cannot reach the registry.
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$NODE_EXTRA_CA_CERTS" ]; then
  say "the machine's NODE_EXTRA_CA_CERTS ($NODE_EXTRA_CA_CERTS) goes into the image"
  mkdir -p "$tmp/rootfs/usr/local/etc"
  cp "$NODE_EXTRA_CA_CERTS" "$tmp/rootfs/usr/local/etc/node-extra-ca.pem"
  changes+=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/etc/node-extra-ca.pem')
fi
tar -C "$tmp/rootfs" -c . | docker import "${changes[@]}" - "$IMAGE" >/dev/null
say "$IMAGE built ($(docker image inspect "$IMAGE" --format '{{.Size}}' | numfmt --to=iec))"
echo "$IMAGE"
