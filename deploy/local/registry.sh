#!/usr/bin/env bash
# A real Confluent-compatible schema registry for ktrail's local stack and tests: Apicurio
# Registry (its Quarkus distribution from Maven Central, deploy/local/registry/pom.xml),
# loopback only, Confluent API under /apis/ccompat/v7 (docs/schemas.md).
#
#   registry.sh install     resolve and unpack the registry into .cache/registry (skipped when there)
#   registry.sh start       start one instance and wait until it answers; prints its URL
#   registry.sh stop [--kill]
#                           stop the instance in KTRAIL_REGISTRY_DIR, or every instance this
#                           checkout started (their pid files); --kill sends SIGKILL, a crash
#   registry.sh status      which instances run, their pids and URLs
#
# Settings (env):
#   KTRAIL_REGISTRY_PORT (18081)  HTTP port on 127.0.0.1
#   KTRAIL_REGISTRY_DIR           the instance's directory: pid file, log, and (file storage)
#                                 its database; default $KTRAIL_CACHE/registry/run-<port>
#   KTRAIL_REGISTRY_STORAGE       mem (default: schemas live as long as the process) or file
#                                 (an H2 database in the instance's directory: a restart keeps
#                                 every schema and id)
#   KTRAIL_REGISTRY_HEAP (256m), KTRAIL_REGISTRY_START_TIMEOUT (120 s)
# The distribution (about 280 MB unpacked) is in <repo>/.cache/registry; instances live under
# ${KTRAIL_CACHE:-<repo>/.cache}/registry, where `./ktrail stop` finds them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONF_DIR=$ROOT/deploy/local/registry
DIST=$ROOT/.cache/registry/dist
CACHE=${KTRAIL_CACHE:-$ROOT/.cache}/registry
HOST=127.0.0.1
PORT=${KTRAIL_REGISTRY_PORT:-18081}
DIR=${KTRAIL_REGISTRY_DIR:-}
STORAGE=${KTRAIL_REGISTRY_STORAGE:-mem}
HEAP=${KTRAIL_REGISTRY_HEAP:-256m}
START_TIMEOUT=${KTRAIL_REGISTRY_START_TIMEOUT:-120}

say() { printf '[registry.sh] %s\n' "$*"; }
die() {
  printf '[registry.sh] error: %s\n' "$*" >&2
  exit 1
}

runner_jar() { find "$DIST" -maxdepth 1 -name 'apicurio-registry-app-*-runner.jar' 2>/dev/null | head -1; }

cmd_install() {
  local stamp=$DIST/.pom.sha256 want tmp t0=$SECONDS
  want=$(sha256sum "$CONF_DIR/pom.xml" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -n "$(runner_jar)" ]; then
    say "registry already in $DIST, skipping"
    return
  fi
  command -v java >/dev/null || die "java not found: apt-get install -y openjdk-17-jre-headless"
  command -v mvn >/dev/null || die "mvn not found: apt-get install -y maven"
  say "resolving Apicurio Registry $(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$CONF_DIR/pom.xml") from Maven Central into $DIST"
  tmp=$DIST.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  mvn -q -B -Dstyle.color=never -f "$CONF_DIR/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" ||
    die "maven could not resolve the registry (network to Maven Central?)"
  tar -xzf "$tmp"/apicurio-registry-app-*-all.tar.gz -C "$tmp"
  rm -f "$tmp"/apicurio-registry-app-*-all.tar.gz
  rm -rf "$DIST"
  mv "$tmp" "$DIST"
  echo "$want" >"$stamp"
  say "installed $(basename "$(runner_jar)") in $((SECONDS - t0)) s"
}

# A pid file only counts if that pid is still our registry (pids get reused): the JVM's
# command line names its instance directory.
running_pid() {
  local dir=$1 pid
  [ -f "$dir/registry.pid" ] || return 1
  pid=$(cat "$dir/registry.pid")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-Dktrail.registry.dir=$dir " || return 1
  echo "$pid"
}
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"; }
url_of() { echo "http://$HOST:$1/apis/ccompat/v7"; }
answering() { curl -fs --max-time 2 -o /dev/null "$(url_of "$1")/subjects"; }
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

cmd_start() {
  local dir=${DIR:-$CACHE/run-$PORT} jar pid t0=$SECONDS db=()
  jar=$(runner_jar)
  [ -n "$jar" ] || die "no registry in $DIST: run registry.sh install"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if pid=$(running_pid "$dir"); then
    say "already running (pid $pid): $(url_of "$(cat "$dir/port")")"
    return
  fi
  port_open "$PORT" && die "port $PORT is taken by another process; set KTRAIL_REGISTRY_PORT to a free port"
  case $STORAGE in
  mem) ;;
  file) db=(-Dquarkus.datasource.jdbc.url="jdbc:h2:file:$dir/db/registry") ;;
  *) die "KTRAIL_REGISTRY_STORAGE must be mem or file, got '$STORAGE'" ;;
  esac
  say "starting Apicurio Registry on $HOST:$PORT ($STORAGE storage, heap $HEAP, dir $dir)"
  [ -f "$dir/stdout.log" ] && mv -f "$dir/stdout.log" "$dir/stdout.log.prev"
  echo "$PORT" >"$dir/port"
  # setsid: it outlives this shell and the test runner that called it. Loopback only; no
  # authentication is configured, so it must never listen elsewhere.
  setsid nohup java -Xms64m -Xmx"$HEAP" -Dktrail.registry.dir="$dir" \
    -Dquarkus.http.host=$HOST -Dquarkus.http.port="$PORT" \
    ${db[@]+"${db[@]}"} -jar "$jar" >"$dir/stdout.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/registry.pid"
  while ! answering "$PORT"; do
    if ! alive "$pid"; then
      tail -n 30 "$dir/stdout.log" >&2 || true
      die "the registry exited during startup (log above, full log: $dir/stdout.log)"
    fi
    ((SECONDS - t0 < START_TIMEOUT)) || die "registry not answering after $START_TIMEOUT s (see $dir/stdout.log)"
    sleep 0.3
  done
  say "ready in $((SECONDS - t0)) s: $(url_of "$PORT")"
}

# Instance directories: the one named, or every one under this checkout's cache.
instances() {
  if [ -n "$DIR" ]; then
    [ -d "$DIR" ] && (cd "$DIR" && pwd)
  else
    find "$CACHE" -name registry.pid -printf '%h\n' 2>/dev/null || true
  fi
}

cmd_stop() {
  local signal=$1 dir pid t0=$SECONDS stopped=0
  while read -r dir; do
    [ -n "$dir" ] || continue
    if pid=$(running_pid "$dir"); then
      say "stopping the registry in $dir (pid $pid, SIG$signal)"
      kill -"$signal" "$pid" 2>/dev/null || true
      while [ -d "/proc/$pid" ] && ((SECONDS - t0 < 30)); do sleep 0.2; done
      if [ -d "/proc/$pid" ]; then
        say "pid $pid still alive after 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
      stopped=$((stopped + 1))
    fi
    rm -f "$dir/registry.pid"
  done < <(instances)
  say "$stopped registry instance(s) stopped"
}

cmd_status() {
  local dir pid any=1
  while read -r dir; do
    [ -n "$dir" ] || continue
    if pid=$(running_pid "$dir"); then
      any=0
      say "running (pid $pid): $(url_of "$(cat "$dir/port")") ($dir)"
    fi
  done < <(instances)
  [ $any = 0 ] || say "no ktrail registry running (start one with: deploy/local/registry.sh start)"
  return $any
}

main() {
  local cmd=${1:-} signal=TERM
  [ -n "$cmd" ] || {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 2
  }
  shift
  case "${1:-}" in --kill) signal=KILL ;; esac
  case "$cmd" in
  install)
    # Several test runs may install at once on a fresh machine.
    mkdir -p "$ROOT/.cache/registry"
    exec 9>"$ROOT/.cache/registry/.install.lock"
    flock -w 900 9 || die "another registry.sh install held the lock for 15 min"
    cmd_install
    ;;
  start)
    mkdir -p "$ROOT/.cache/registry"
    (
      flock -w 900 9 || die "another registry.sh install held the lock for 15 min"
      cmd_install
    ) 9>"$ROOT/.cache/registry/.install.lock"
    cmd_start
    ;;
  stop) cmd_stop "$signal" ;;
  status) cmd_status ;;
  *) die "unknown command '$cmd' (install | start | stop | status)" ;;
  esac
}

main "$@"
