#!/usr/bin/env bash
# Installs what ktrail needs on Debian 12, idempotently, and builds it: Debian packages, Node 24
# (into .cache/node), npm packages, the Kafka broker's jars, the eBPF objects and the addon.
# Every step checks before it acts and says what it did.
#   deploy/local/install.sh up     what `./ktrail up` builds and runs (deploy/local/packages/up.txt)
#   deploy/local/install.sh test   that, plus what the tests need (packages/test.txt, Avro for
#                                  Java, the schema registry, the compiled JavaScript); the default
#   KTRAIL_SKIP_BUILD=1 ... install.sh  packages only
# On a terminal each step is one line with its progress and the output goes to
# .cache/logs/install.log (deploy/local/progress.sh); KTRAIL_OUTPUT=json keeps the plain stream.
set -euo pipefail

say() { echo "[install] $*"; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/local/node-env.sh
. deploy/local/node-env.sh
# shellcheck source=deploy/local/apt.sh
. deploy/local/apt.sh
# shellcheck source=deploy/local/progress.sh
. deploy/local/progress.sh

path="${1:-test}"
case "$path" in
up) lists=(deploy/local/packages/up.txt) ;;
test) lists=(deploy/local/packages/up.txt deploy/local/packages/test.txt) ;;
*)
  echo "usage: $0 [up|test]" >&2
  exit 2
  ;;
esac
build=1
if [ "${KTRAIL_SKIP_BUILD:-0}" = 1 ]; then build=0; fi
steps=$((4 + 2 * build))
if [ "$path" = test ]; then steps=$((steps + 2 + build)); fi
steps_begin install "ktrail $path: install and build" "$steps"

# Debian packages: exactly the ones missing from this path's lists. A Java or Maven from
# elsewhere on the machine (e.g. a preinstalled JDK) counts.
mapfile -t wanted < <(for list in "${lists[@]}"; do apt_list "$list"; done)
mapfile -t missing < <(apt_missing "${wanted[@]}")
java_ok() { command -v "$1" >/dev/null && "$1" -version 2>&1 | grep -Eq "(version \"|javac )(1[7-9]|[2-9][0-9])"; }
satisfied() {
  case "$1" in
  openjdk-17-jre-headless) java_ok java ;;
  openjdk-17-jdk-headless) java_ok javac ;;
  maven) command -v mvn >/dev/null ;;
  *) return 1 ;;
  esac
}
to_install=()
for pkg in "${missing[@]}"; do satisfied "$pkg" || to_install+=("$pkg"); done
if [ ${#to_install[@]} -gt 0 ]; then
  step "Debian packages (${#to_install[@]} to install)" -- apt_install "${to_install[@]}"
else
  step "Debian packages" -- say "all ${#wanted[@]} present"
fi

# Node 24 and its npm from the npm registry, whatever Node the machine has (Debian's is 18).
step "Node.js $(bash deploy/local/node.sh version)" -- bash deploy/local/node.sh install
if [ "$(command -v node)" != "$KTRAIL_NODE_HOME/bin/node" ] || [ "$(command -v npm)" != "$KTRAIL_NODE_HOME/bin/npm" ]; then
  say "ERROR: node and npm on PATH are $(command -v node) and $(command -v npm), not $KTRAIL_NODE_HOME/bin's" >&2
  exit 1
fi

if [ ! -d /sys/kernel/tracing/events ]; then
  note "mount -t tracefs nodev /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing || note "WARNING: could not mount tracefs (tracepoints will not attach)"
fi

# npm packages with `npm ci` (exactly the lock), only when the lock or the Node version changed
# since the last install. The lock keeps entries for chdb's other platforms, which `npm install`
# drops here: the check says how to put them back before `npm ci` refuses the lock.
npm_packages() {
  local stamp="node_modules/.ktrail-lock.sha" lock_sha
  lock_sha="$( (sha256sum package-lock.json | cut -d' ' -f1) && node --version)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$lock_sha" ]; then
    say "npm packages: up to date"
    return
  fi
  # npm ci empties node_modules first: through a link (a worktree sharing another checkout's
  # packages) it would empty that checkout's too.
  if [ -L node_modules ]; then
    say "ERROR: node_modules links to $(readlink -f node_modules), whose packages are not this lock's" >&2
    say "       (or were installed by another Node): run deploy/local/install.sh where they live, or remove the link" >&2
    return 1
  fi
  node deploy/local/lock-platforms.ts --check
  say "npm ci (from package-lock.json, Node $(node --version))"
  # In the install view, npm's "http fetch GET 200 .../name-1.2.3.tgz" lines (one per package,
  # beside those of its metadata) are the step's progress.
  npm ci --no-audit --no-fund --loglevel="$([ $STEP_HUMAN = 1 ] && echo http || echo error)"
  echo "$lock_sha" >"$stamp"
}
step "npm packages" --count 'http fetch GET [0-9]+ [^ ]+\.tgz' --unit packages -- npm_packages

step "Kafka broker jars" --count 'Downloaded from' --unit downloaded -- bash deploy/local/kafka.sh install
if [ "$path" = test ]; then
  step "Avro for Java (tests)" --count 'Downloaded from' --unit downloaded -- bash schemas/interop/install.sh
  step "Schema registry (tests)" --count 'Downloaded from' --unit downloaded -- bash deploy/local/registry.sh install
fi

native_build() {
  # Rebuilt when a source changed or another Node built it (native/build/node-version).
  if [ -f native/build/Release/ktrail_native.node ] && [ -f native/build/Release/ktrail_codec.node ] &&
    [ "$(cat native/build/node-version 2>/dev/null)" = "$(node --version)" ] &&
    [ -z "$(find native/src native/test native/Makefile native/binding.gyp -newer native/build/Release/ktrail_native.node 2>/dev/null | head -1)" ]; then
    say "native addon up to date"
    return
  fi
  # Offline: the script builds against this Node's own headers (.cache/node/include/node).
  say "npm run build:native (Node $(node --version))"
  npm run --silent build:native
  node --version >native/build/node-version
}
bpf_build() {
  if make -C bpf -q >/dev/null 2>&1; then
    say "eBPF objects up to date"
  else
    npm run --silent build:bpf
  fi
}
if [ $build = 1 ]; then
  step "eBPF objects" --count '^  BPF ' --of "$(find bpf -maxdepth 1 -name '*.bpf.c' | wc -l)" --unit compiled -- bpf_build
  units=$(($(find native/src -name '*.cc' | wc -l) + $(find native/test -name '*.c' | wc -l)))
  step "native addon" --count 'CXX\(target\)|^  (BPF|CC) ' --of "$units" --unit compiled -- native_build
  if [ "$path" = test ]; then
    step "compiled JavaScript for the image entrypoint (tests)" -- npm run --silent build:js
  fi
fi
if [ $STEP_HUMAN != 1 ]; then say done; fi
