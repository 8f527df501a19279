#!/usr/bin/env bash
# Debian's clickhouse-server (18.16, from 2018) on loopback, for tests of the HTTP transport
# path only: connect, insert, error classification, server restarts. It is far too old for
# ktrail's schema (no DateTime64, no TTL, no dedup tokens): the schema is tested on chDB.
#
#   deploy/local/clickhouse-server.sh install   apt-get install clickhouse-server (idempotent)
#   deploy/local/clickhouse-server.sh start     start it (reuses one that already answers)
#   deploy/local/clickhouse-server.sh stop      stop the server this script started
#   deploy/local/clickhouse-server.sh status    is it answering? which version?
#   deploy/local/clickhouse-server.sh owned     exit 0 if the answering server is the one started here
#   deploy/local/clickhouse-server.sh url       print the HTTP URL
#
# Data, config and logs live under .cache/clickhouse-server (git-ignored). It listens on
# 127.0.0.1 only: HTTP on KTRAIL_CH_HTTP_PORT (18123), HTTPS on KTRAIL_CH_HTTPS_PORT (18443)
# with a throwaway CA and server certificate (tls/ca.pem, for the client's TLS path), native
# TCP on KTRAIL_CH_TCP_PORT (19000). Users: `default` (no password) and `ktrail` (password
# `ktrail-test`), both loopback only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${KTRAIL_CACHE:-$ROOT/.cache}/clickhouse-server"
HTTP_PORT="${KTRAIL_CH_HTTP_PORT:-18123}"
TCP_PORT="${KTRAIL_CH_TCP_PORT:-19000}"
HTTPS_PORT="${KTRAIL_CH_HTTPS_PORT:-18443}"
PIDFILE="$DIR/server.pid"
LOG="$DIR/log/server.log"
URL="http://127.0.0.1:$HTTP_PORT"
# shellcheck source=deploy/local/apt.sh
. "$ROOT/deploy/local/apt.sh"

say() { echo "[clickhouse-server.sh] $*"; }
die() {
  echo "[clickhouse-server.sh] ERROR: $*" >&2
  exit 1
}
answering() { curl -fsS --max-time 2 "$URL/ping" >/dev/null 2>&1; }
server_bin() { command -v clickhouse-server || command -v /usr/sbin/clickhouse-server || true; }

cmd_install() {
  if [ -n "$(server_bin)" ] && command -v curl >/dev/null && command -v openssl >/dev/null; then
    say "install: clickhouse-server, curl and openssl already installed"
    return
  fi
  [ "$(id -u)" = 0 ] || die "install needs root (apt-get)"
  say "install: apt-get install -y clickhouse-server curl openssl"
  apt_install clickhouse-server curl openssl
}

write_certs() {
  local tls="$DIR/tls"
  [ -f "$tls/server.pem" ] && [ -f "$tls/ca.pem" ] && return
  say "start: generating a throwaway CA and a server certificate for 127.0.0.1 in $tls"
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ktrail test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/san.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 3650 -extfile "$tls/san.ext" -out "$tls/server.pem" 2>/dev/null
  chmod 600 "$tls"/*.key
}

write_config() {
  mkdir -p "$DIR/data" "$DIR/tmp" "$DIR/user_files" "$DIR/log"
  write_certs
  # A minimal config of our own: the Debian default listens on every address and
  # writes to /var/lib; ours keeps everything under the cache and on loopback.
  cat >"$DIR/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$LOG</log><errorlog>$DIR/log/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$HTTP_PORT</http_port>
  <https_port>$HTTPS_PORT</https_port>
  <tcp_port>$TCP_PORT</tcp_port>
  <openSSL>
    <server>
      <certificateFile>$DIR/tls/server.pem</certificateFile>
      <privateKeyFile>$DIR/tls/server.key</privateKeyFile>
      <verificationMode>none</verificationMode>
      <loadDefaultCAFile>false</loadDefaultCAFile>
      <disableProtocols>sslv2,sslv3</disableProtocols>
      <preferServerCiphers>true</preferServerCiphers>
    </server>
  </openSSL>
  <path>$DIR/data/</path>
  <tmp_path>$DIR/tmp/</tmp_path>
  <user_files_path>$DIR/user_files/</user_files_path>
  <users_config>$DIR/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
</yandex>
EOF
  cat >"$DIR/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <ktrail>
      <password>ktrail-test</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </ktrail>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
EOF
}

cmd_start() {
  if answering; then
    say "start: already answering on $URL ($(curl -fsS "$URL/?query=SELECT%20version()"))"
    return
  fi
  cmd_install
  local bin
  bin="$(server_bin)"
  [ -n "$bin" ] || die "clickhouse-server not found after install"
  write_config
  say "start: $bin on $URL (data in $DIR/data, log $LOG)"
  "$bin" --config-file="$DIR/config.xml" --pid-file="$PIDFILE" --daemon
  for _ in $(seq 1 60); do
    if answering; then
      say "start: answering on $URL (version $(curl -fsS "$URL/?query=SELECT%20version()"))"
      return
    fi
    sleep 0.5
  done
  tail -n 20 "$DIR/log/server.err.log" >&2 2>/dev/null || true
  die "clickhouse-server did not answer on $URL within 30 s (see $DIR/log)"
}

cmd_stop() {
  if [ ! -f "$PIDFILE" ]; then
    say "stop: no pid file ($PIDFILE): nothing started by this script"
    return
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    say "stop: SIGTERM to clickhouse-server pid $pid"
    kill "$pid"
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "stop: still running after 30 s, SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  else
    say "stop: pid $pid is not running"
  fi
  rm -f "$PIDFILE"
}

# Exit 0 when the server answering is the one this checkout started (pid file, live process).
cmd_owned() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && answering
}

cmd_status() {
  if answering; then
    say "status: answering on $URL, version $(curl -fsS "$URL/?query=SELECT%20version()")"
  else
    say "status: not answering on $URL"
    return 1
  fi
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
owned) cmd_owned ;;
url) echo "$URL" ;;
https-url) echo "https://127.0.0.1:$HTTPS_PORT" ;;
ca) echo "$DIR/tls/ca.pem" ;;
*)
  echo "usage: $0 install|start|stop|status|owned|url|https-url|ca" >&2
  exit 2
  ;;
esac
