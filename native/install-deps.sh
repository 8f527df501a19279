#!/usr/bin/env bash
# Installs what the native addon needs to build on a fresh Debian 12 (idempotent).
# Build: `npm run build:native` (node-gyp, offline against the distro's Node headers).
set -euo pipefail

pkgs=(libbpf-dev libelf-dev zlib1g-dev pkg-config g++ make clang llvm bpftool)
missing=()
for p in "${pkgs[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    echo "native/install-deps: $p already installed"
  else
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "native/install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi

# node-gyp normally downloads Node headers from nodejs.org, which CI can't reach. Debian's
# nodejs package ships them in /usr/include/node: point npm's nodedir there once.
if [[ -f /usr/include/node/node_api.h ]]; then
  current=$(npm config get nodedir 2>/dev/null || true)
  if [[ "$current" != "/usr" ]]; then
    echo "native/install-deps: npm config set nodedir /usr (use the distro's Node headers offline)"
    npm config set nodedir /usr
  else
    echo "native/install-deps: npm nodedir already /usr"
  fi
fi

# tracepoint attach needs tracefs (libbpf reads tracepoint ids from it).
if [[ $(id -u) == 0 && ! -e /sys/kernel/tracing/events ]]; then
  echo "native/install-deps: mount -t tracefs nodev /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing || echo "native/install-deps: could not mount tracefs"
fi
echo "native/install-deps: done"
