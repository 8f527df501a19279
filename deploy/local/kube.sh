#!/usr/bin/env bash
# A real Kubernetes control plane for ktrail's tests, built from source through the Go module
# proxy into .cache/kube (like the Kafka jars): kine (etcd API on sqlite), kube-apiserver,
# kube-controller-manager and kubectl, helm, and KEDA's CRDs from KEDA's Go module. There is
# no kubelet or scheduler: pods stay Pending. test/support/kube-apiserver.ts runs them.
#
#   kube.sh install   build what is missing (cold: ~15 min of CPU; then under a second)
#   kube.sh stop      stop every control plane the tests started here (pid files in run/)
#   kube.sh status    what is built and what runs
#   kube.sh bin       print the directory of the binaries
#   kube.sh crds      print the directory of KEDA's CRDs
#
# Kubernetes' own module refuses `go install` (replace directives; the module zip has no
# staging/), so its source is copied out of the module cache, made a plain module (no vendor/,
# no go.work, no replace block, k8s.io/* v0.0.0 -> the release's v0.x) and built with
# -mod=mod. Go comes from deploy/local/go.sh; Go caches in ~/.cache/ktrail-go (go.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KINE_VERSION=v0.17.5
KUBE_VERSION=v1.34.0
HELM_VERSION=v4.3.2
# The newest KEDA whose go.mod this Go accepts (v2.21 wants Go 1.27.4).
KEDA_VERSION=v2.20.2
CACHE="${KTRAIL_KUBE_CACHE:-$ROOT/.cache/kube}"
BIN="$CACHE/bin"
RUN="$CACHE/run"

say() { echo "[kube.sh] $*"; }
die() {
  echo "[kube.sh] ERROR: $*" >&2
  exit 1
}
# A binary counts as built when its stamp names the pinned version.
built() { [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$BIN/.$1.version"; }
timed() {
  local what="$1" start=$SECONDS
  shift
  say "build: $what"
  "$@"
  say "build: $what done in $((SECONDS - start)) s"
}

# The extracted source directory of a module version (go mod download), or a clear error.
module_dir() {
  local json dir
  json="$(go mod download -json "$1" 2>&1)" || true
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] && [ -d "$dir" ] ||
    die "go mod download $1: $(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' | head -1)"
  echo "$dir"
}

go_env() {
  local env
  env="$(bash "$ROOT/deploy/local/go.sh" env)" || die "no Go toolchain (deploy/local/go.sh)"
  eval "$env"
}

build_kine() {
  CGO_ENABLED=1 GOBIN="$BIN" go install \
    -ldflags "-s -w -X github.com/k3s-io/kine/pkg/version.Version=$KINE_VERSION" \
    "github.com/k3s-io/kine@$KINE_VERSION"
}

# The module's source as a plain, writable module in $CACHE/src/kubernetes-<version>.
kubernetes_source() {
  local src="$CACHE/src/kubernetes-$KUBE_VERSION" dir minor
  [ -f "$src/.ktrail-prepared" ] && {
    echo "$src"
    return
  }
  dir="$(module_dir "k8s.io/kubernetes@$KUBE_VERSION")" || exit 1
  rm -rf "$src"
  mkdir -p "$CACHE/src"
  cp -R "$dir" "$src"
  chmod -R u+w "$src"
  rm -rf "$src/vendor" "$src/go.work" "$src/go.work.sum"
  minor="${KUBE_VERSION#v1.}"
  # k8s.io/api v0.0.0 (satisfied by staging/ through replace) -> the published v0.<minor>.
  sed -i -e '/^replace (/,/^)/d' \
    -e "s#^\(\s*k8s\.io/[a-z0-9./-]*\) v0\.0\.0\(\s*//.*\)\?\$#\1 v0.$minor\2#" "$src/go.mod"
  ! grep -Eq ' v0\.0\.0( |$)' "$src/go.mod" || die "go.mod still requires a v0.0.0 module"
  touch "$src/.ktrail-prepared"
  echo "$src"
}

build_kubernetes() {
  local src minor date
  src="$(kubernetes_source)" || exit 1
  minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local x=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    x+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  # One invocation: the three commands share most packages. -trimpath keeps the source
  # directory (per checkout) out of the build cache's keys, so another clone's build hits it.
  (cd "$src" && CGO_ENABLED=0 GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w$x" -o "$BIN/" \
    ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kubectl)
}

build_helm() {
  CGO_ENABLED=0 GOBIN="$BIN" go install \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

# KEDA's CustomResourceDefinitions as KEDA ships them, from its Go module's source.
keda_crds() {
  local dir out="$CACHE/crds/keda-$KEDA_VERSION"
  [ -f "$out/keda.sh_scaledobjects.yaml" ] && [ -f "$out/keda.sh_triggerauthentications.yaml" ] && return
  dir="$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")" || exit 1
  mkdir -p "$out.tmp"
  cp "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" "$dir/config/crd/bases/keda.sh_triggerauthentications.yaml" "$out.tmp/"
  chmod u+w "$out.tmp"/*
  rm -rf "$out"
  mv "$out.tmp" "$out"
  say "crds: KEDA $KEDA_VERSION ScaledObject and TriggerAuthentication in $out"
}

cmd_install() {
  command -v openssl >/dev/null || die "openssl is needed (certificates of the test API server)"
  mkdir -p "$BIN"
  if built kine "$KINE_VERSION" && built kube-apiserver "$KUBE_VERSION" && built kube-controller-manager "$KUBE_VERSION" &&
    built kubectl "$KUBE_VERSION" && built helm "$HELM_VERSION" && [ -f "$CACHE/crds/keda-$KEDA_VERSION/keda.sh_scaledobjects.yaml" ]; then
    say "install: kine $KINE_VERSION, Kubernetes $KUBE_VERSION, helm $HELM_VERSION and KEDA $KEDA_VERSION CRDs already in $CACHE"
    return
  fi
  # Checkouts sharing one .cache build one at a time; the second finds the first's binaries.
  exec 9>"$CACHE/.install.lock"
  flock 9
  if built kine "$KINE_VERSION" && built kube-apiserver "$KUBE_VERSION" && built kube-controller-manager "$KUBE_VERSION" &&
    built kubectl "$KUBE_VERSION" && built helm "$HELM_VERSION" && [ -f "$CACHE/crds/keda-$KEDA_VERSION/keda.sh_scaledobjects.yaml" ]; then
    say "install: built meanwhile by another checkout"
    return
  fi
  go_env
  command -v gcc >/dev/null || die "gcc is needed (kine's sqlite is cgo)"
  say "install: Go $(go env GOVERSION), caches in $(dirname "$GOCACHE")"
  built kine "$KINE_VERSION" || { timed "kine $KINE_VERSION" build_kine && stamp kine "$KINE_VERSION"; }
  if ! built kube-apiserver "$KUBE_VERSION" || ! built kube-controller-manager "$KUBE_VERSION" || ! built kubectl "$KUBE_VERSION"; then
    timed "kube-apiserver, kube-controller-manager, kubectl $KUBE_VERSION" build_kubernetes
    for b in kube-apiserver kube-controller-manager kubectl; do stamp "$b" "$KUBE_VERSION"; done
  fi
  built helm "$HELM_VERSION" || { timed "helm $HELM_VERSION" build_helm && stamp helm "$HELM_VERSION"; }
  keda_crds
  say "install: done ($BIN)"
}

# Each control plane the tests start writes <name>.pid files (with the command line's marker,
# its data directory, in <name>.match) into run/<instance>/; stop ends those still running
# (controller manager, API server, then kine) and deletes their data.
cmd_stop() {
  local dir pidfile pid match stopped=0
  [ -d "$RUN" ] || {
    say "stop: no control plane started here"
    return
  }
  for dir in "$RUN"/*/; do
    [ -d "$dir" ] || continue
    for name in kube-controller-manager kube-apiserver kine; do
      pidfile="$dir/$name.pid"
      [ -f "$pidfile" ] || continue
      pid="$(cat "$pidfile")"
      match="$(cat "$dir/$name.match" 2>/dev/null || echo "$dir")"
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$match"; then
        say "stop: $name pid $pid ($(basename "$dir"))"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do
          [ -d "/proc/$pid" ] || break
          sleep 0.25
        done
        [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
        stopped=$((stopped + 1))
      fi
      rm -f "$pidfile"
    done
    # The instance's data (certificates, sqlite, logs) is the directory its command lines name.
    match="$(cat "$dir/kine.match" 2>/dev/null || true)"
    case "$match" in */ktrail-kube-*) rm -rf "$match" ;; esac
    rm -rf "$dir"
  done
  say "stop: $stopped process(es) stopped"
}

cmd_status() {
  local b
  for b in kine kube-apiserver kube-controller-manager kubectl helm; do
    if [ -x "$BIN/$b" ]; then say "status: $b $(cat "$BIN/.$b.version" 2>/dev/null)"; else say "status: $b not built"; fi
  done
  local n=0
  [ -d "$RUN" ] && n="$(find "$RUN" -name '*.pid' | wc -l)"
  say "status: $n recorded process(es) of test control planes"
}

case "${1:-}" in
  install) cmd_install ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  bin) echo "$BIN" ;;
  crds) echo "$CACHE/crds/keda-$KEDA_VERSION" ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
