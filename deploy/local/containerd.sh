#!/usr/bin/env bash
# Local containerd for ktrail's containerd metadata tests: Debian's containerd started
# standalone (not docker's private one), and a busybox image imported with `ctr image import`
# from an OCI archive made here from busybox-static (no registry is reachable).
#
#   deploy/local/containerd.sh install   apt packages: containerd runc busybox-static
#   deploy/local/containerd.sh start     start containerd on $KTRAIL_CONTAINERD_SOCK (reuses a running one)
#   deploy/local/containerd.sh stop      stop the containerd this script started
#   deploy/local/containerd.sh status
#   deploy/local/containerd.sh image     import ktrail/busybox:latest into namespace k8s.io (idempotent)
#   deploy/local/containerd.sh all      install + start + image
#
# The CRI plugin is disabled: there is no kubelet here, and the tests set the CRI labels
# (io.kubernetes.pod.name, ...) themselves on containers made with `ctr run`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NAME=containerd.sh
# shellcheck source=deploy/local/runtime-lib.sh
. "$ROOT/deploy/local/runtime-lib.sh"
CACHE="${KTRAIL_CACHE:-$ROOT/.cache}/containerd"
SOCK="${KTRAIL_CONTAINERD_SOCK:-/run/containerd/containerd.sock}"
STATE_DIR="$(dirname "$SOCK")"
DATA_ROOT="${KTRAIL_CONTAINERD_ROOT:-/var/lib/containerd}"
PIDFILE="$CACHE/containerd.pid"
LOG="$CACHE/containerd.log"
CONFIG="$CACHE/config.toml"
NS="${KTRAIL_CONTAINERD_NAMESPACE:-k8s.io}"
IMAGE="${KTRAIL_CONTAINERD_IMAGE:-docker.io/ktrail/busybox:latest}"

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }
c() { ctr --address "$SOCK" "$@"; }
answering() { [ -S "$SOCK" ] && command -v ctr >/dev/null && c version >/dev/null 2>&1; }

cmd_install() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
  if [ ${#missing[@]} -eq 0 ]; then
    say "install: containerd runc busybox-static already installed"
    return
  fi
  need_root
  say "install: apt-get install -y ${missing[*]}"
  apt_install "${missing[@]}"
}

cmd_start() {
  if answering; then
    say "start: containerd already answering on $SOCK, reusing it"
    return
  fi
  need_root
  command -v containerd >/dev/null || die "containerd not installed: run '$0 install'"
  mkdir -p "$CACHE" "$STATE_DIR"
  cat >"$CONFIG" <<EOF
version = 2
root = "$DATA_ROOT"
state = "$STATE_DIR"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
EOF
  say "start: containerd --config $CONFIG (socket $SOCK, log $LOG)"
  setsid containerd --config "$CONFIG" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  wait_answering containerd 30
  say "start: containerd is up (pid $(cat "$PIDFILE"), $(c version | awk '/Version/ {print $2; exit}'))"
}

cmd_stop() { stop_started containerd 20 "$CONFIG"; }

cmd_status() {
  if answering; then
    say "status: containerd answering on $SOCK ($(c version | awk '/Version/ {print $2; exit}'))"
    if c -n "$NS" image ls -q | grep -qx "$IMAGE"; then say "status: image $IMAGE present in namespace $NS"; else say "status: image $IMAGE missing in namespace $NS"; fi
  else
    say "status: containerd not answering on $SOCK"
    return 1
  fi
}

# An OCI image layout (one layer: busybox-static and its applet links) as a tar, by hand:
# sha256 digests, config, manifest, index. Enough for `ctr image import`.
build_oci_archive() {
  local out="$1" work rootfs blobs layer config manifest
  work="$(mktemp -d)"
  rootfs="$work/rootfs"
  blobs="$work/oci/blobs/sha256"
  mkdir -p "$blobs"
  busybox_rootfs "$rootfs"
  tar -C "$rootfs" --numeric-owner -cf "$work/layer.tar" .
  local diffid
  diffid="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
  gzip -n -c "$work/layer.tar" >"$work/layer.tar.gz"
  layer="$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)"
  mv "$work/layer.tar.gz" "$blobs/$layer"
  cat >"$work/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"],"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:$diffid"]}}
EOF
  config="$(sha256sum "$work/config.json" | cut -d' ' -f1)"
  mv "$work/config.json" "$blobs/$config"
  cat >"$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$(stat -c %s "$blobs/$config")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer","size":$(stat -c %s "$blobs/$layer")}]}
EOF
  manifest="$(sha256sum "$work/manifest.json" | cut -d' ' -f1)"
  local msize
  msize="$(stat -c %s "$work/manifest.json")"
  mv "$work/manifest.json" "$blobs/$manifest"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  cat >"$work/oci/index.json" <<EOF
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$msize,"annotations":{"io.containerd.image.name":"$IMAGE","org.opencontainers.image.ref.name":"latest"}}]}
EOF
  tar -C "$work/oci" -cf "$out" .
  rm -rf "$work"
}

cmd_image() {
  answering || die "containerd not answering on $SOCK: run '$0 start'"
  if c -n "$NS" image ls -q | grep -qx "$IMAGE"; then
    say "image: $IMAGE already present in namespace $NS"
    return
  fi
  [ -x /bin/busybox ] || die "busybox-static missing: run '$0 install'"
  mkdir -p "$CACHE"
  say "image: building an OCI archive from busybox-static -> $CACHE/busybox-oci.tar"
  build_oci_archive "$CACHE/busybox-oci.tar"
  say "image: ctr -n $NS image import $CACHE/busybox-oci.tar"
  c -n "$NS" image import "$CACHE/busybox-oci.tar" >/dev/null
  c -n "$NS" image ls -q | grep -qx "$IMAGE" || die "import did not create $IMAGE (got: $(c -n "$NS" image ls -q | tr '\n' ' '))"
  say "image: $IMAGE imported into namespace $NS"
}

runtime_main "$@"
