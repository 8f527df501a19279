#!/usr/bin/env bash
# Local Docker for ktrail's container tests: Debian's docker.io, started without iptables
# or a bridge (the test machines have no NAT and no registry), plus a local busybox image
# built with `docker import` so no registry is ever needed.
#
#   deploy/local/docker.sh install   apt packages: docker.io containerd runc busybox-static
#   deploy/local/docker.sh start     start dockerd (reuses a running one)
#   deploy/local/docker.sh stop      stop the dockerd this script started
#   deploy/local/docker.sh status    is dockerd answering? which image is there?
#   deploy/local/docker.sh image     build ktrail/busybox:latest (idempotent)
#   deploy/local/docker.sh all       install + start + image
#
# Containers must run with `--network none` or `--network host` (no bridge exists).
# Idempotent: every step checks before it acts and says what it does.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NAME=docker.sh
# shellcheck source=deploy/local/runtime-lib.sh
. "$ROOT/deploy/local/runtime-lib.sh"
CACHE="${KTRAIL_CACHE:-$ROOT/.cache}/docker"
SOCK="${KTRAIL_DOCKER_SOCK:-/var/run/docker.sock}"
PIDFILE="$CACHE/dockerd.pid"
LOG="$CACHE/dockerd.log"
IMAGE="${KTRAIL_DOCKER_IMAGE:-ktrail/busybox:latest}"
# Prefer Debian's client: it matches Debian's dockerd (a newer client elsewhere on PATH works
# too, through API version negotiation).
DOCKER_BIN="$(command -v /usr/bin/docker || command -v docker || true)"

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (dockerd needs it)"; }
dk() { "$DOCKER_BIN" -H "unix://$SOCK" "$@"; }
answering() { [ -S "$SOCK" ] && [ -n "$DOCKER_BIN" ] && dk version --format '{{.Server.Version}}' >/dev/null 2>&1; }

cmd_install() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && dpkg -s busybox-static >/dev/null 2>&1 ||
    missing+=(busybox-static)
  if [ ${#missing[@]} -eq 0 ]; then
    say "install: docker.io containerd runc busybox-static already installed"
    return
  fi
  need_root
  say "install: apt-get install -y ${missing[*]}"
  apt_install "${missing[@]}"
  DOCKER_BIN="$(command -v /usr/bin/docker || command -v docker || true)"
}

cmd_start() {
  if answering; then
    say "start: dockerd already answering on $SOCK (version $(dk version --format '{{.Server.Version}}')), reusing it"
    return
  fi
  need_root
  command -v dockerd >/dev/null || die "dockerd not installed: run '$0 install'"
  mkdir -p "$CACHE"
  # A stale socket or pid file from a killed daemon would make dockerd refuse to start.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    say "start: removing stale /var/run/docker.pid"
    rm -f /var/run/docker.pid
  fi
  # dockerd uses a system containerd when its socket exists; a socket left by a killed
  # containerd (a previous session) would leave dockerd waiting on nothing.
  local csock=/run/containerd/containerd.sock
  if [ -S "$csock" ] && ! timeout 5 ctr --address "$csock" version >/dev/null 2>&1; then
    say "start: removing stale $csock (no containerd answers on it)"
    rm -f "$csock"
  fi
  say "start: dockerd --iptables=false --bridge=none --ip-masq=false -H unix://$SOCK (log: $LOG)"
  # setsid: dockerd must outlive this script and the test runner that called it.
  setsid dockerd --iptables=false --ip6tables=false --bridge=none --ip-masq=false \
    -H "unix://$SOCK" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  wait_answering dockerd 60
  say "start: dockerd is up (pid $(cat "$PIDFILE"), version $(dk version --format '{{.Server.Version}}'))"
}

cmd_stop() { stop_started dockerd 30 dockerd; }

cmd_status() {
  if answering; then
    say "status: dockerd answering on $SOCK, version $(dk version --format '{{.Server.Version}}')," \
      "cgroup driver $(dk info --format '{{.CgroupDriver}}') v$(dk info --format '{{.CgroupVersion}}')"
    if dk image inspect "$IMAGE" >/dev/null 2>&1; then say "status: image $IMAGE present"; else say "status: image $IMAGE missing"; fi
  else
    say "status: dockerd not answering on $SOCK"
    return 1
  fi
}

cmd_image() {
  answering || die "dockerd not answering on $SOCK: run '$0 start'"
  if dk image inspect "$IMAGE" >/dev/null 2>&1; then
    say "image: $IMAGE already present"
    return
  fi
  [ -x /bin/busybox ] || die "busybox-static missing: run '$0 install'"
  local rootfs
  rootfs="$(mktemp -d)"
  # A RETURN trap outlives the function (it would fire again when runtime_main returns, with
  # $rootfs out of scope): it removes itself.
  trap 'rm -rf "$rootfs"; trap - RETURN' RETURN
  say "image: building $IMAGE from busybox-static ($(/bin/busybox | head -n1))"
  busybox_rootfs "$rootfs"
  tar -C "$rootfs" -c . | dk import --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
  say "image: $IMAGE built ($(dk image inspect "$IMAGE" --format '{{.Id}}'))"
}

runtime_main "$@"
