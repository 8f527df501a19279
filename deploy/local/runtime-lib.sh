# Sourced by deploy/local/docker.sh and deploy/local/containerd.sh: what both local container
# runtimes do the same way. The sourcing script sets NAME (for messages), and SOCK, PIDFILE and
# LOG, and defines answering() (is the daemon answering on $SOCK?).

# shellcheck source=deploy/local/apt.sh
. "$ROOT/deploy/local/apt.sh"

say() { echo "[$NAME] $*"; }
die() {
  echo "[$NAME] ERROR: $*" >&2
  exit 1
}

# A busybox-static rootfs in $1: the binary, its applet links (sh, sleep, cat, ..., made by
# busybox itself, inside the rootfs) and a root user.
busybox_rootfs() {
  local rootfs="$1"
  mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root}
  cp /bin/busybox "$rootfs/bin/busybox"
  chroot "$rootfs" /bin/busybox --install -s
  echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
  echo 'root:x:0:' >"$rootfs/etc/group"
}

# After the daemon $1 was started with its pid in $PIDFILE: waits up to $2 seconds for
# answering(); dies with the tail of $LOG if the daemon exits or never answers.
wait_answering() {
  local daemon="$1" seconds="$2"
  for _ in $(seq 1 $((seconds * 2))); do
    answering && return
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      tail -n 20 "$LOG" >&2 || true
      die "$daemon exited during start; see $LOG"
    fi
    sleep 0.5
  done
  tail -n 20 "$LOG" >&2 || true
  die "$daemon did not answer on $SOCK within $seconds s; see $LOG"
}

# Stops the daemon $1 whose pid this script wrote to $PIDFILE: SIGTERM, then SIGKILL after $2
# seconds (said). The pid counts only while its command line still matches $3 (pids are
# reused). A daemon this script did not start (another checkout's, the system's) is left alone.
stop_started() {
  local daemon="$1" seconds="$2" pattern="$3" pid=""
  [ -f "$PIDFILE" ] && pid="$(cat "$PIDFILE")"
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"; then
    say "stop: stopping $daemon pid $pid (SIGTERM, SIGKILL after $seconds s)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((seconds * 2))); do
      [ -d "/proc/$pid" ] || break
      sleep 0.5
    done
    if [ -d "/proc/$pid" ]; then
      say "stop: $daemon pid $pid still running after $seconds s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do
        [ -d "/proc/$pid" ] || break
        sleep 0.5
      done
    fi
    rm -f "$PIDFILE"
    say "stop: $daemon stopped"
  else
    rm -f "$PIDFILE"
    if answering; then
      say "stop: a $daemon this script did not start is running; leaving it alone"
    else
      say "stop: $daemon not running"
    fi
  fi
}

# The command line both scripts take; the sourcing script defines cmd_install, cmd_start,
# cmd_stop, cmd_status and cmd_image.
runtime_main() {
  case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  image) cmd_image ;;
  all)
    cmd_install
    cmd_start
    cmd_image
    ;;
  *)
    echo "usage: $0 install|start|stop|status|image|all" >&2
    exit 2
    ;;
  esac
}
