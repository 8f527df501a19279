#!/usr/bin/env bash
# The real Apache Kafka broker for ktrail's local stack and tests: KRaft mode, loopback
# only, jars resolved by Maven from deploy/local/kafka/pom.xml into .cache/kafka/libs.
#
#   kafka.sh install                 resolve the broker jars (skipped when already there)
#   kafka.sh start  [--brokers 1|3] [--node N]
#                                    start one broker (default) or a three-node cluster,
#                                    or only node N of it (to bring a stopped node back)
#   kafka.sh stop   [--brokers 1|3] [--node N] [--kill]
#                                    stop what this script started (default: everything);
#                                    --kill sends SIGKILL, a crash instead of a clean stop
#   kafka.sh status [--brokers 1|3]  which nodes run, their pids and ports (exit 1: none)
#   kafka.sh bootstrap [--brokers 1|3]
#                                    the cluster's client addresses, comma-separated
#   kafka.sh quorum [--brokers 1|3]  the KRaft active controller (metadata quorum leader)
#   kafka.sh topics [--brokers 1|3] [--prefix P] [--partitions N] [--replication-factor N]
#                                    create the ktrail topics (idempotent; copies: 3 on the cluster)
#   kafka.sh logs   [--brokers 1|3] [--node N] [-f | --path]
#                                    the broker log's last lines (-f: follow), or its path
#   kafka.sh clean                   stop everything and delete the brokers' data
#
# The single broker and the three-node cluster use different ports and data dirs, so a
# failover test can run the cluster while other tests keep using the single broker.
# Ports (env overrides):
#   single broker:  KTRAIL_KAFKA_PORT (19092) client, KTRAIL_KAFKA_CONTROLLER_PORT (port+1)
#   cluster of 3:   KTRAIL_KAFKA3_PORT (29092): node n listens on base+2(n-1), its
#                   controller on base+2(n-1)+1  -> 29092/29093, 29094/29095, 29096/29097
# Authentication and TLS (single broker only, for tests of ktrail's client side):
#   KTRAIL_KAFKA_SECURITY_DIR=DIR adds two listeners beside PLAINTEXT (which stays, for the
#   broker itself and test plumbing):
#     SASL_SSL on KTRAIL_KAFKA_SASL_SSL_PORT (port+2): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
#     SSL      on KTRAIL_KAFKA_MTLS_PORT (port+3): a client certificate signed by DIR/ca.pem
#              is required (mutual TLS)
#   DIR holds PEM files (Kafka 4 reads PEM, no JKS): ca.pem, broker.pem (the broker's
#   certificate chain), broker.key (its unencrypted PKCS#8 key); and the users, one a line:
#     plain-users  "name password"                            (PLAIN, the listener's JAAS)
#     scram-users  "SCRAM-SHA-256|SCRAM-SHA-512 name password" (added when storage is formatted)
# Other settings: KTRAIL_KAFKA_HEAP (512m), KTRAIL_KAFKA_START_TIMEOUT (120 s),
#   KTRAIL_KAFKA_CACHE (jars, CDS archive and broker data; default: jars in <repo>/.cache/kafka,
#   data, pid files and logs in $KTRAIL_CACHE/kafka, <repo>/.cache/kafka without KTRAIL_CACHE,
#   so one checkout can run a second, separate stack), KTRAIL_KAFKA_JVM_OPTS (extra JVM flags, split
#   on spaces), KTRAIL_KAFKA_CDS (1: record and use a class-data-sharing archive; 0: don't).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONF_DIR=$ROOT/deploy/local/kafka
# What install makes (JARS) and what running brokers write (CACHE).
JARS=${KTRAIL_KAFKA_CACHE:-$ROOT/.cache/kafka}
CACHE=${KTRAIL_KAFKA_CACHE:-${KTRAIL_CACHE:-$ROOT/.cache}/kafka}
LIBS=$JARS/libs
HOST=127.0.0.1
PORT=${KTRAIL_KAFKA_PORT:-19092}
CONTROLLER_PORT=${KTRAIL_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
C3_PORT=${KTRAIL_KAFKA3_PORT:-29092}
SECURITY_DIR=${KTRAIL_KAFKA_SECURITY_DIR:-}
SASL_SSL_PORT=${KTRAIL_KAFKA_SASL_SSL_PORT:-$((PORT + 2))}
MTLS_PORT=${KTRAIL_KAFKA_MTLS_PORT:-$((PORT + 3))}
HEAP=${KTRAIL_KAFKA_HEAP:-512m}
START_TIMEOUT=${KTRAIL_KAFKA_START_TIMEOUT:-120}

# Fixed KRaft cluster ids (base64 of 16 ASCII bytes) so a restart reuses formatted storage.
SINGLE_CLUSTER_ID=a3RyYWlsLXNpbmdsZS0wMQ # "ktrail-single-01"
C3_CLUSTER_ID=a3RyYWlsLWNsdXN0ZXItMw     # "ktrail-cluster-3"

say() { printf '[kafka.sh] %s\n' "$*"; }
die() {
  printf '[kafka.sh] error: %s\n' "$*" >&2
  exit 1
}
# Authentication and TLS of the single broker (KTRAIL_KAFKA_SECURITY_DIR).
# shellcheck source=kafka/security.sh
. "$CONF_DIR/security.sh"

# --- layout of a cluster -------------------------------------------------------------------
# A cluster is named by its broker count: "1" (the default single broker) or "3".
cluster_name() { if [ "$1" = 1 ]; then echo single; else echo c3; fi; }
node_dir() { echo "$CACHE/data-$(cluster_name "$1")-$2"; }
client_port() { if [ "$1" = 1 ]; then echo "$PORT"; else echo $((C3_PORT + 2 * ($2 - 1))); fi; }
controller_port() {
  if [ "$1" = 1 ]; then echo "$CONTROLLER_PORT"; else echo $((C3_PORT + 2 * ($2 - 1) + 1)); fi
}
voters() {
  local n=$1 i out=
  for ((i = 1; i <= n; i++)); do out+="${out:+,}$i@$HOST:$(controller_port "$n" "$i")"; done
  echo "$out"
}
bootstrap() {
  local n=$1 i out=
  for ((i = 1; i <= n; i++)); do out+="${out:+,}$HOST:$(client_port "$n" "$i")"; done
  echo "$out"
}

# --- process helpers -------------------------------------------------------------------------
# A pid file only counts if that pid is still our broker (pids get reused).
running_pid() {
  local dir=$1 pid
  [ -f "$dir/broker.pid" ] || return 1
  pid=$(cat "$dir/broker.pid")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$dir/server.properties" || return 1
  echo "$pid"
}
# During startup the pid is our own fresh child, so only whether it still lives counts:
# right after the fork its cmdline is still this script's, not yet java's.
alive_pid() {
  local pid
  pid=$(cat "$1/broker.pid" 2>/dev/null) || return 1
  [ -r "/proc/$pid/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat"
}
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

java_cmd() {
  command -v java >/dev/null || die "java not found: apt-get install -y openjdk-17-jre-headless"
  echo java
}

# --- install ---------------------------------------------------------------------------------
cmd_install() {
  install_jars
  ensure_cds_archive
}

install_jars() {
  local stamp=$LIBS/.pom.sha256 want
  want=$(sha256sum "$CONF_DIR/pom.xml" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "broker jars already in $LIBS ($(find "$LIBS" -name '*.jar' | wc -l) jars), skipping"
    return
  fi
  java_cmd >/dev/null
  command -v mvn >/dev/null || die "mvn not found: apt-get install -y maven"
  say "resolving Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$CONF_DIR/pom.xml") and its runtime dependencies from Maven Central into $LIBS"
  local t0=$SECONDS tmp=$LIBS.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  bash "$ROOT/deploy/local/mvn.sh" -f "$CONF_DIR/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" ||
    die "maven could not resolve the broker (network to Maven Central?)"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  echo "$want" >"$stamp"
  say "installed $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
}

# --- class-data sharing ----------------------------------------------------------------------
# Most of a broker's start on a busy 2-core machine is the JVM loading and verifying
# thousands of Kafka and Scala classes. A CDS archive, recorded once from a real broker run,
# maps them in ready-made: restart to ready went from 46 s to 17 s under load (docs/kafka.md).
# The archive is tied to the jar set and the JVM build; KTRAIL_KAFKA_CDS=0 turns it off.
cds_archive() {
  local jars jvm
  jars=$(cut -c1-12 "$LIBS/.pom.sha256")
  jvm=$("$(java_cmd)" -version 2>&1 | sha256sum | cut -c1-12)
  echo "$JARS/cds/kafka-$jars-$jvm.jsa"
}

ensure_cds_archive() {
  [ "${KTRAIL_KAFKA_CDS:-1}" = 1 ] || return 0
  local archive dir=$CACHE/cds-training port=$((PORT + 100)) cport=$((PORT + 101)) t0=$SECONDS pid p
  archive=$(cds_archive)
  if [ -s "$archive" ]; then
    say "class-data-sharing archive present ($(basename "$archive"))"
    return 0
  fi
  for p in $port $cport; do
    if port_open "$p"; then
      say "port $p is taken: no class-data-sharing archive this time (brokers start slower)"
      return 0
    fi
  done
  say "recording a class-data-sharing archive for faster broker starts: one throwaway broker on $HOST:$port (KTRAIL_KAFKA_CDS=0 skips this)"
  rm -rf "$dir"
  mkdir -p "$(dirname "$archive")"
  write_properties "$dir" ": throwaway broker that records the CDS archive" 1 "1@$HOST:$cport" "$port" "$cport" 1 1
  format_storage "$dir" "$SINGLE_CLUSTER_ID"
  launch_broker "$dir" -XX:ArchiveClassesAtExit="$archive.tmp"
  pid=$(cat "$dir/broker.pid")
  while [ "$(node_state "$dir" "$port")" = starting ] && ((SECONDS - t0 < START_TIMEOUT)); do sleep 0.5; done
  # The JVM writes the archive as it exits after SIGTERM: give it time (~25 s when busy).
  kill -TERM "$pid" 2>/dev/null || true
  while [ -d "/proc/$pid" ] && ((SECONDS - t0 < START_TIMEOUT + 180)); do sleep 0.5; done
  if [ -d "/proc/$pid" ]; then
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$archive.tmp"
  fi
  if [ -s "$archive.tmp" ]; then
    mv -f "$archive.tmp" "$archive"
    rm -rf "$dir"
    say "class-data-sharing archive recorded in $((SECONDS - t0)) s ($(du -h "$archive" | cut -f1))"
  else
    say "WARNING: no class-data-sharing archive was written (see $dir/stdout.log); brokers start without it"
  fi
}

# --- start -----------------------------------------------------------------------------------
format_storage() {
  local dir=$1 cid=$2
  [ -f "$dir/kraft/meta.properties" ] && return 0
  local scram=()
  if [ -n "$SECURITY_DIR" ] && [ -f "$SECURITY_DIR/scram-users" ]; then mapfile -t scram < <(scram_args); fi
  say "formatting KRaft storage $dir/kraft (cluster id $cid)${scram[*]:+, with $((${#scram[@]} / 2)) SCRAM user(s)}"
  "$(java_cmd)" -cp "$LIBS/*" -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" \
    -Dktrail.kafka.logFile="$dir/broker.log" \
    kafka.tools.StorageTool format --config "$dir/server.properties" --cluster-id "$cid" \
    ${scram[@]+"${scram[@]}"} --ignore-formatted >"$dir/format.log" 2>&1 || {
    cat "$dir/format.log" >&2
    die "formatting $dir/kraft failed"
  }
}

# Starts kafka.Kafka on $dir/server.properties in the background; extra args are JVM flags.
launch_broker() {
  local dir=$1 java
  shift
  java=$(java_cmd)
  # A fresh log per run: readiness is read from it, so an old "started" line must not count.
  if [ -f "$dir/broker.log" ]; then mv -f "$dir/broker.log" "$dir/broker.log.prev"; fi
  # The JVM flags Kafka's own kafka-run-class.sh uses, with a small fixed heap.
  # setsid: the broker outlives this shell and the test runner that called it.
  # 9>&-: it must not inherit (and so hold forever) kafka.sh's lock.
  # shellcheck disable=SC2086 # KTRAIL_KAFKA_JVM_OPTS is a list of flags
  setsid nohup "$java" -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" \
    -Dktrail.kafka.logFile="$dir/broker.log" "$@" ${KTRAIL_KAFKA_JVM_OPTS:-} -cp "$LIBS/*" \
    kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 </dev/null 9>&- &
  echo $! >"$dir/broker.pid"
}

# dead | starting | ready. Ready = the process lives, its client port accepts connections
# and the broker logged that startup finished (the port alone opens before the metadata
# log has caught up).
node_state() {
  local dir=$1 port=$2
  if ! alive_pid "$dir"; then
    echo dead
  elif port_open "$port" && grep -q 'Kafka Server started' "$dir/broker.log" 2>/dev/null; then
    echo ready
  else
    echo starting
  fi
}

# $dir/server.properties: the shared settings plus one broker's identity, listeners and
# replication (rf replicas, isr of them in sync). secure=1 adds the SASL_SSL and SSL listeners.
write_properties() {
  local dir=$1 what=$2 id=$3 voters=$4 port=$5 cport=$6 rf=$7 isr=$8 secure=${9:-0}
  local listeners="PLAINTEXT://$HOST:$port" protocols=PLAINTEXT:PLAINTEXT
  if [ "$secure" = 1 ]; then
    listeners+=",SASL_SSL://$HOST:$SASL_SSL_PORT,SSL://$HOST:$MTLS_PORT"
    protocols+=",SASL_SSL:SASL_SSL,SSL:SSL"
  fi
  mkdir -p "$dir"
  {
    cat "$CONF_DIR/server.properties"
    cat <<EOF

# --- generated by kafka.sh$what ---
node.id=$id
controller.quorum.voters=$voters
listeners=$listeners,CONTROLLER://$HOST:$cport
advertised.listeners=$listeners
listener.security.protocol.map=CONTROLLER:PLAINTEXT,$protocols
log.dirs=$dir/kraft
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
EOF
    if [ "$secure" = 1 ]; then security_properties; fi
  } >"$dir/server.properties"
  # It may hold the PLAIN users' passwords.
  chmod 600 "$dir/server.properties"
}

write_config() {
  local n=$1 i=$2 rf isr
  # One broker can only hold one replica; three hold three and survive losing one.
  if [ "$n" = 1 ]; then rf=1 isr=1; else rf=3 isr=2; fi
  local secure=0
  if [ "$n" = 1 ] && [ -n "$SECURITY_DIR" ]; then secure=1; fi
  write_properties "$(node_dir "$n" "$i")" " for node $i of the $n-broker cluster" "$i" "$(voters "$n")" \
    "$(client_port "$n" "$i")" "$(controller_port "$n" "$i")" "$rf" "$isr" "$secure"
}

start_node() {
  local n=$1 i=$2 dir pid cid archive cds=()
  dir=$(node_dir "$n" "$i")
  if pid=$(running_pid "$dir"); then
    say "node $i of cluster $n already running (pid $pid, port $(client_port "$n" "$i"))"
    return
  fi
  for p in $(client_port "$n" "$i") $(controller_port "$n" "$i"); do
    port_open "$p" && die "port $p is taken by another process; set KTRAIL_KAFKA_PORT / KTRAIL_KAFKA3_PORT to free ports"
  done
  if [ "$n" = 1 ] && [ -n "$SECURITY_DIR" ]; then security_check; fi
  write_config "$n" "$i"
  if [ "$n" = 1 ]; then cid=$SINGLE_CLUSTER_ID; else cid=$C3_CLUSTER_ID; fi
  format_storage "$dir" "$cid"
  archive=$(cds_archive)
  if [ "${KTRAIL_KAFKA_CDS:-1}" = 1 ] && [ -s "$archive" ]; then cds=(-XX:SharedArchiveFile="$archive"); fi
  say "starting node $i of cluster $n: client $HOST:$(client_port "$n" "$i"), controller $HOST:$(controller_port "$n" "$i"), heap $HEAP, data $dir${cds[*]:+, with CDS archive}"
  launch_broker "$dir" ${cds[@]+"${cds[@]}"}
}

# Nodes to act on: all of the cluster, or the one named with --node (failover tests).
nodes_of() {
  local n=$1 only=${2:-}
  if [ -n "$only" ]; then echo "$only"; else seq 1 "$n"; fi
}

wait_ready() {
  local n=$1 only=${2:-} t0=$SECONDS i dir pending
  while :; do
    pending=0
    for i in $(nodes_of "$n" "$only"); do
      dir=$(node_dir "$n" "$i")
      case $(node_state "$dir" "$(client_port "$n" "$i")") in
      dead)
        tail -n 30 "$dir/broker.log" "$dir/stdout.log" >&2 2>/dev/null || true
        die "node $i of cluster $n exited during startup (logs above, full log: $dir/broker.log)"
        ;;
      starting) pending=1 ;;
      esac
    done
    [ $pending = 0 ] && break
    ((SECONDS - t0 < START_TIMEOUT)) || die "cluster $n not ready after $START_TIMEOUT s (see $(node_dir "$n" 1)/broker.log)"
    sleep 0.5
  done
  say "cluster $n ready in $((SECONDS - t0)) s: bootstrap $(bootstrap "$n")"
}

cmd_start() {
  local n=$1 only=${2:-} i
  cmd_install
  for i in $(nodes_of "$n" "$only"); do start_node "$n" "$i"; done
  wait_ready "$n" "$only"
}

# --- stop / status / logs / clean ------------------------------------------------------------
# SIGTERM = controlled shutdown (leadership moves first); --kill = SIGKILL, a crash.
stop_cluster() {
  local n=$1 only=${2:-} signal=${3:-TERM} i dir pid pids=() t0=$SECONDS
  for i in $(nodes_of "$n" "$only"); do
    dir=$(node_dir "$n" "$i")
    if pid=$(running_pid "$dir"); then pids+=("$pid"); fi
  done
  if [ ${#pids[@]} = 0 ]; then
    say "cluster $n${only:+ node $only}: nothing running"
    return
  fi
  # All nodes at once: stopping them one by one can leave the last ones waiting for a
  # controller quorum that is already gone.
  say "cluster $n${only:+ node $only}: stopping pids ${pids[*]} (SIG$signal, SIGKILL after 30 s)"
  kill -"$signal" "${pids[@]}" 2>/dev/null || true
  while ((SECONDS - t0 < 30)); do
    local alive=0
    for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do
    if [ -d "/proc/$pid" ]; then
      say "pid $pid still alive after 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for i in $(nodes_of "$n" "$only"); do rm -f "$(node_dir "$n" "$i")/broker.pid"; done
  say "cluster $n${only:+ node $only} stopped in $((SECONDS - t0)) s"
}

cmd_stop() {
  local n=${1:-} only=${2:-} signal=${3:-TERM}
  if [ -n "$n" ]; then stop_cluster "$n" "$only" "$signal"; else
    stop_cluster 1 "" "$signal"
    stop_cluster 3 "" "$signal"
  fi
}

cmd_status() {
  local only=${1:-} n i dir pid state any=1
  for n in ${only:-1 3}; do
    for ((i = 1; i <= n; i++)); do
      dir=$(node_dir "$n" "$i")
      if pid=$(running_pid "$dir"); then
        if port_open "$(client_port "$n" "$i")"; then state="running, accepting"; else state="running, not accepting yet"; fi
        any=0
        say "cluster $n node $i: $state (pid $pid, client $HOST:$(client_port "$n" "$i"), controller $HOST:$(controller_port "$n" "$i"))"
      elif [ -d "$dir" ]; then
        say "cluster $n node $i: stopped (data in $dir)"
      fi
    done
  done
  [ $any = 0 ] || say "no ktrail broker running${only:+ in cluster $only} (start one with: deploy/local/kafka.sh start${only:+ --brokers $only})"
  return $any
}

# The active controller, asked through the Admin API (MetadataQuorum.java, run from source).
cmd_quorum() {
  local n=$1
  [ -f "$LIBS/.pom.sha256" ] || die "broker jars missing: run deploy/local/kafka.sh install"
  "$(java_cmd)" -Xmx128m -XX:TieredStopAtLevel=1 -cp "$LIBS/*" \
    -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" -Dktrail.kafka.logFile=/dev/null \
    "$CONF_DIR/MetadataQuorum.java" "$(bootstrap "$n")"
}

cmd_logs() {
  local n=$1 node=$2 follow=$3 path=$4 file
  file=$(node_dir "$n" "$node")/broker.log
  [ -f "$file" ] || die "no log at $file (was cluster $n started?)"
  if [ "$path" = 1 ]; then echo "$file"; elif [ "$follow" = 1 ]; then tail -n 100 -F "$file"; else tail -n 100 "$file"; fi
}

cmd_topics() {
  local n=$1
  shift
  local tsx=$ROOT/node_modules/.bin/tsx
  [ -x "$tsx" ] || die "node_modules missing: run npm ci in $ROOT"
  # Copies per partition and min.insync.replicas come from the broker count the cluster
  # reports (common/kafka-replication.ts), unless --replication-factor says otherwise.
  say "ensuring ktrail topics on $(bootstrap "$n")"
  "$tsx" "$CONF_DIR/topics.ts" --brokers "$(bootstrap "$n")" "$@"
}

cmd_clean() {
  cmd_stop
  say "deleting broker data under $CACHE/data-* (jars in $LIBS stay)"
  rm -rf "$CACHE"/data-*
}

# --- arguments -------------------------------------------------------------------------------
brokers_arg() {
  case "$1" in 1 | 3) echo "$1" ;; *) die "--brokers must be 1 or 3, got '$1'" ;; esac
}

main() {
  local cmd=${1:-} brokers= node= follow=0 path=0 signal=TERM rest=()
  [ -n "$cmd" ] || {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 2
  }
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
    --brokers)
      brokers=$(brokers_arg "${2:-}")
      shift 2
      ;;
    --brokers=*)
      brokers=$(brokers_arg "${1#*=}")
      shift
      ;;
    --node)
      node=${2:-}
      shift 2
      ;;
    -f | --follow)
      follow=1
      shift
      ;;
    --path)
      path=1
      shift
      ;;
    --kill)
      signal=KILL
      shift
      ;;
    *)
      rest+=("$1")
      shift
      ;;
    esac
  done
  if [ -n "$node" ]; then
    [ -n "$brokers" ] || die "--node needs --brokers 1|3"
    [[ "$node" =~ ^[0-9]+$ ]] && ((node >= 1 && node <= brokers)) || die "--node must be 1..$brokers, got '$node'"
  fi
  # One kafka.sh at a time changes brokers or jars: test runs (several vitest projects,
  # several people on one machine) may all call `start` on a fresh machine at once.
  case "$cmd" in
  install | start | stop | clean)
    mkdir -p "$JARS" "$CACHE"
    exec 9>"$JARS/.kafka.sh.lock"
    flock -w 900 9 || die "another kafka.sh held $JARS/.kafka.sh.lock for 15 min"
    ;;
  esac
  case "$cmd" in
  install) cmd_install ;;
  start) cmd_start "${brokers:-1}" "$node" ;;
  stop) cmd_stop "$brokers" "$node" "$signal" ;;
  status) cmd_status "$brokers" ;;
  bootstrap) bootstrap "${brokers:-1}" ;;
  quorum) cmd_quorum "${brokers:-1}" ;;
  topics) cmd_topics "${brokers:-1}" ${rest[@]+"${rest[@]}"} ;;
  logs) cmd_logs "${brokers:-1}" "${node:-1}" "$follow" "$path" ;;
  clean) cmd_clean ;;
  *) die "unknown command '$cmd' (install | start | stop | status | bootstrap | quorum | topics | logs | clean)" ;;
  esac
}

main "$@"
