#!/usr/bin/env bash
# Installs everything ktrail needs on Debian 12, idempotently, and builds it:
# Debian packages, npm packages, the Kafka broker's jars, the eBPF objects and the addon.
# Every step checks before it acts and prints what it does.
#   deploy/local/install.sh            everything
#   KTRAIL_SKIP_BUILD=1 ... install.sh  packages only
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
say() { echo "[install] $*"; }

# One apt transaction for every part: eBPF toolchain, addon build, containers, Kafka, ClickHouse.
APT_PACKAGES=(
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libzstd-dev pkg-config make g++ linux-libc-dev # bpf/ + native/ (zstd: Kafka codec)
  python3                                                                               # node-gyp builds the addon with it
  docker.io containerd runc busybox-static                                              # container tests
  openjdk-17-jdk-headless maven                                                         # Kafka broker; javac for the Avro interop test
  clickhouse-server                                                                     # HTTP transport tests
  curl openssl                                                                          # clickhouse-server.sh (health, test CA)
  iproute2 procps util-linux                                                            # ss, pgrep, mount, flock, setsid, setpriv
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# Java or Maven may come from elsewhere on the machine (e.g. a preinstalled JDK): accept them.
if command -v javac >/dev/null && javac -version 2>&1 | grep -Eq 'javac (1[7-9]|2[0-9])'; then
  missing=("${missing[@]/openjdk-17-jdk-headless/}")
fi
command -v mvn >/dev/null && missing=("${missing[@]/maven/}")
read -r -a missing <<<"${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # clickhouse-server's postinst starts nothing we rely on; policy-rc.d keeps services down.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
else
  say "Debian packages: all present"
fi

if ! command -v node >/dev/null || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
  say "ERROR: Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

if [ ! -d /sys/kernel/tracing/events ]; then
  say "mount -t tracefs nodev /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing || say "WARNING: could not mount tracefs (tracepoints will not attach)"
fi

# npm packages, only when the lock file changed since the last install. `npm install`
# (which keeps to the lock) rather than `npm ci`: chdb lists optional per-platform packages
# that the registry does not serve (darwin, arm64), and npm 11's `ci` refuses such a lock.
stamp="node_modules/.ktrail-lock.sha"
lock_sha="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sha" ]; then
  say "npm install (from package-lock.json)"
  npm install --no-audit --no-fund --loglevel=error
  echo "$lock_sha" >"$stamp"
else
  say "npm packages: up to date"
fi

bash deploy/local/kafka.sh install
bash schemas/interop/install.sh

if [ "${KTRAIL_SKIP_BUILD:-0}" != 1 ]; then
  say "build: eBPF objects (npm run build:bpf)"
  npm run --silent build:bpf
  if [ ! -f native/build/Release/ktrail_native.node ] || [ ! -f native/build/Release/ktrail_codec.node ] ||
    [ -n "$(find native/src native/test native/Makefile native/binding.gyp -newer native/build/Release/ktrail_native.node 2>/dev/null | head -1)" ]; then
    # Offline: the script builds against this Node's own headers, never nodejs.org.
    say "build: native addon (npm run build:native)"
    npm run --silent build:native
  else
    say "build: native addon up to date"
  fi
  say "build: compiled JavaScript for the image entrypoint (npm run build:js)"
  npm run --silent build:js
fi
say "done"
