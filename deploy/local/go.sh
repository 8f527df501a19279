#!/usr/bin/env bash
# The Go toolchain that builds the Kubernetes test tools (deploy/local/kube.sh): any Go >= 1.26.5
# (kine's floor) already on the machine, else Go 1.27.3 installed into ~/.cache/ktrail-go/sdk from the
# Go module proxy (the golang.org/toolchain module the go command itself switches to with
# GOTOOLCHAIN), fetched by whatever Go is there — Debian 12's golang-go (1.19) on a fresh
# machine, installed with apt for that one download.
#
#   go.sh bin     print the bin directory of a new-enough Go (installing one when there is none)
#   go.sh env     print `export ...` lines for that Go and for its caches (~/.cache/ktrail-go)
#   go.sh status  which Go would be used
#
# Caches (all under KTRAIL_GO_CACHE, default ~/.cache/ktrail-go: shared by the machine's
# checkouts, as Maven's ~/.m2 is for the Kafka jars, so a clean clone rebuilds the tools into
# its own .cache/kube from warm caches): GOPATH path/, GOMODCACHE mod/, GOCACHE build/,
# toolchains sdk/. GOTOOLCHAIN=local: the chosen Go never switches by itself.
# KTRAIL_GO_MIN raises the floor (a machine whose Go is too old takes the install path).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GO_MIN="${KTRAIL_GO_MIN:-1.26.5}"
GO_FETCH=1.27.3
CACHE="${KTRAIL_GO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ktrail-go}"

say() { echo "[go.sh] $*" >&2; }
die() {
  echo "[go.sh] ERROR: $*" >&2
  exit 1
}

version_of() { GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null | sed 's/^go//'; }
new_enough() { [ "$(printf '%s\n%s\n' "$GO_MIN" "$1" | sort -V | head -1)" = "$GO_MIN" ]; }

# The first Go >= GO_MIN among: the one installed here, the one on PATH, /usr/local/go.
find_go() {
  local candidate v
  for candidate in "$CACHE/sdk/go$GO_FETCH/bin/go" "$(command -v go || true)" /usr/local/go/bin/go; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    v="$(version_of "$candidate")" || continue
    [ -n "$v" ] && new_enough "$v" && { dirname "$(readlink -f "$candidate")"; return 0; }
  done
  return 1
}

# Any Go at all, to download the toolchain module with.
bootstrap_go() {
  local go
  go="$(command -v go || true)"
  [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
  if [ -z "$go" ]; then
    say "no Go on this machine: apt-get install golang-go (Debian's, only to fetch Go $GO_FETCH)"
    # shellcheck source=deploy/local/apt.sh
    { . "$ROOT/deploy/local/apt.sh" && apt_install golang-go; } >&2 ||
      die "could not install Debian's golang-go to fetch Go $GO_FETCH with"
    go="$(command -v go)"
  fi
  echo "$go"
}

install_toolchain() {
  [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || die "no Go >= $GO_MIN found; install one (only linux-amd64 is fetched here)"
  local go module dir stage
  go="$(bootstrap_go)"
  module="golang.org/toolchain@v0.0.1-go$GO_FETCH.linux-amd64"
  say "no Go >= $GO_MIN here: go mod download $module (with $("$go" env GOVERSION))"
  mkdir -p "$CACHE/sdk" "$CACHE/mod"
  # -json prints the extracted module's directory; the module zip keeps no mode bits.
  dir="$(cd "$CACHE" && GOTOOLCHAIN=local GOFLAGS=-modcacherw GOPATH="$CACHE/path" GOMODCACHE="$CACHE/mod" \
    "$go" mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] && [ -f "$dir/bin/go" ] || die "go mod download $module gave no toolchain"
  stage="$CACHE/sdk/.go$GO_FETCH.$$"
  rm -rf "$stage"
  cp -R "$dir" "$stage"
  chmod -R u+w "$stage"
  chmod +x "$stage"/bin/* "$stage"/pkg/tool/*/*
  [ "$(version_of "$stage/bin/go")" = "$GO_FETCH" ] || die "the unpacked toolchain is not go$GO_FETCH"
  rm -rf "$CACHE/sdk/go$GO_FETCH"
  mv "$stage" "$CACHE/sdk/go$GO_FETCH"
  say "installed Go $GO_FETCH in $CACHE/sdk/go$GO_FETCH"
}

go_bin() {
  find_go && return
  install_toolchain
  find_go || die "Go $GO_FETCH installed but not usable"
}

case "${1:-}" in
  bin) go_bin ;;
  env)
    bin="$(go_bin)"
    cat <<EOF
export PATH="$bin:\$PATH"
export GOTOOLCHAIN=local GOPATH="$CACHE/path" GOMODCACHE="$CACHE/mod" GOCACHE="$CACHE/build"
export GOFLAGS="-buildvcs=false -modcacherw" CGO_ENABLED=1
EOF
    ;;
  status)
    if bin="$(find_go)"; then say "status: Go $(version_of "$bin/go") in $bin"; else
      say "status: no Go >= $GO_MIN (go.sh bin installs Go $GO_FETCH)"
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 bin|env|status" >&2
    exit 2
    ;;
esac
