#!/usr/bin/env bash
# Installs everything ktrail needs on Debian 12, idempotently, and builds it: Debian
# packages, Node 24 (into .cache/node), npm packages, the Kafka broker's jars, the schema
# registry, the eBPF objects and the addon.
# Every step checks before it acts and prints what it does.
#   deploy/local/install.sh            everything
#   KTRAIL_SKIP_BUILD=1 ... install.sh  packages only
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/local/node-env.sh
. deploy/local/node-env.sh
say() { echo "[install] $*"; }

# One apt transaction for every part: eBPF toolchain, addon build, containers, Kafka, ClickHouse,
# a browser for the report test.
APT_PACKAGES=(
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libzstd-dev pkg-config make g++ linux-libc-dev # bpf/ + native/ (zstd: Kafka codec)
  python3                                                                               # node-gyp builds the addon with it
  docker.io containerd runc busybox-static                                              # container tests
  openjdk-17-jdk-headless maven                                                         # Kafka broker; javac for the Avro interop test
  clickhouse-server                                                                     # HTTP transport tests
  curl openssl ca-certificates                                                          # node.sh (sha512), clickhouse-server.sh
  debootstrap                                                                           # deploy/docker/base-image.sh (image build test)
  iproute2 procps util-linux                                                            # ss, pgrep, mount, flock, setsid, setpriv
  chromium                                                                              # the report test renders the HTML report headless
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

# Node 24 and its npm from the npm registry, whatever Node the machine has (Debian's is 18).
bash deploy/local/node.sh install
if [ "$(command -v node)" != "$KTRAIL_NODE_HOME/bin/node" ] || [ "$(command -v npm)" != "$KTRAIL_NODE_HOME/bin/npm" ]; then
  say "ERROR: node and npm on PATH are $(command -v node) and $(command -v npm), not $KTRAIL_NODE_HOME/bin's" >&2
  exit 1
fi

if [ ! -d /sys/kernel/tracing/events ]; then
  say "mount -t tracefs nodev /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing || say "WARNING: could not mount tracefs (tracepoints will not attach)"
fi

# npm packages with `npm ci` (exactly the lock), only when the lock or the Node version changed
# since the last install. The lock keeps entries for chdb's other platforms, which `npm install`
# drops here: the check says how to put them back before `npm ci` refuses the lock.
stamp="node_modules/.ktrail-lock.sha"
lock_sha="$( (sha256sum package-lock.json | cut -d' ' -f1) && node --version)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sha" ]; then
  # npm ci empties node_modules first: through a link (a worktree sharing another checkout's
  # packages) it would empty that checkout's too.
  if [ -L node_modules ]; then
    say "ERROR: node_modules links to $(readlink -f node_modules), whose packages are not this lock's" >&2
    say "       (or were installed by another Node): run deploy/local/install.sh where they live, or remove the link" >&2
    exit 1
  fi
  node deploy/local/lock-platforms.ts --check
  say "npm ci (from package-lock.json, Node $(node --version))"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sha" >"$stamp"
else
  say "npm packages: up to date"
fi

bash deploy/local/kafka.sh install
bash deploy/local/registry.sh install
bash schemas/interop/install.sh

if [ "${KTRAIL_SKIP_BUILD:-0}" != 1 ]; then
  say "build: eBPF objects (npm run build:bpf)"
  npm run --silent build:bpf
  # Rebuilt when a source changed or another Node built it (native/build/node-version).
  if [ ! -f native/build/Release/ktrail_native.node ] || [ ! -f native/build/Release/ktrail_codec.node ] ||
    [ "$(cat native/build/node-version 2>/dev/null)" != "$(node --version)" ] ||
    [ -n "$(find native/src native/test native/Makefile native/binding.gyp -newer native/build/Release/ktrail_native.node 2>/dev/null | head -1)" ]; then
    # Offline: the script builds against this Node's own headers (.cache/node/include/node).
    say "build: native addon (npm run build:native, Node $(node --version))"
    npm run --silent build:native
    node --version >native/build/node-version
  else
    say "build: native addon up to date"
  fi
  say "build: compiled JavaScript for the image entrypoint (npm run build:js)"
  npm run --silent build:js
fi
say "done"
