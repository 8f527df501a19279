#!/usr/bin/env bash
# Checks every prerequisite of the local pipeline and the test suite, and says exactly what
# is missing and how to fix it. Exit 0 when everything is there, 1 otherwise.
#   deploy/local/preflight.sh [--quiet]
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
QUIET="${1:-}"
failures=0
ok() { [ "$QUIET" = --quiet ] || printf '  ok    %-22s %s\n' "$1" "$2"; }
bad() {
  printf '  MISS  %-22s %s\n        fix: %s\n' "$1" "$2" "$3"
  failures=$((failures + 1))
}
check() { # name, test-command, detail-when-ok, detail-when-missing, fix
  if eval "$2" >/dev/null 2>&1; then ok "$1" "$3"; else bad "$1" "$4" "$5"; fi
}

echo "ktrail preflight ($(uname -sr), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB)"
check root '[ "$(id -u)" = 0 ]' "running as root" "not root: eBPF, dockerd and cgroup writes need it" "run as root (sudo -i)"
check btf '[ -r /sys/kernel/btf/vmlinux ]' "/sys/kernel/btf/vmlinux" "kernel BTF missing: CO-RE programs cannot load" "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"
check tracefs '[ -d /sys/kernel/tracing/events ]' "/sys/kernel/tracing mounted" "tracefs not mounted: tracepoints cannot attach" "mount -t tracefs nodev /sys/kernel/tracing"
check cgroup2 'grep -q " cgroup2 " /proc/mounts' "cgroup v2 at $(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)" "no cgroup v2 mount: per-cgroup ids need it" "mount -t cgroup2 none /sys/fs/cgroup/unified"
NODE_BIN="$ROOT/.cache/node/bin/node"
check node '[ "$("$NODE_BIN" --version)" = "v$(bash "$ROOT/deploy/local/node.sh" version)" ]' "node $("$NODE_BIN" --version 2>/dev/null) in .cache/node" "Node $(bash "$ROOT/deploy/local/node.sh" version) missing from .cache/node (the machine's own node is not used)" "deploy/local/node.sh install"
check java 'java -version 2>&1 | grep -Eq "version \"(1[7-9]|2[0-9])"' "$(java -version 2>&1 | head -1)" "Java >= 17 missing (Kafka broker, schema registry)" "apt-get install -y openjdk-17-jre-headless (the tests: openjdk-17-jdk-headless)"
check maven 'command -v mvn' "$(mvn -v 2>/dev/null | head -1 | sed 's/\x1b\[[0-9;]*m//g')" "Maven missing (resolves the Kafka broker jars and the schema registry)" "apt-get install -y maven"
check clang 'command -v clang' "$(clang --version 2>/dev/null | head -1)" "clang missing (compiles bpf/)" "apt-get install -y clang"
check bpftool 'command -v bpftool' "$(command -v bpftool)" "bpftool missing (vmlinux.h)" "apt-get install -y bpftool"
check libbpf '[ -e /usr/include/bpf/libbpf.h ]' "libbpf headers" "libbpf-dev missing (bpf/ and native/)" "apt-get install -y libbpf-dev libelf-dev zlib1g-dev"
check python3 'command -v python3' "$(python3 --version 2>/dev/null)" "python3 missing (node-gyp builds native/ with it)" "apt-get install -y python3"
check libzstd '[ -e /usr/include/zstd.h ]' "zstd headers" "libzstd-dev missing (native/ codec addon: Kafka zstd batches)" "apt-get install -y libzstd-dev"
check debootstrap 'command -v debootstrap' "$(command -v debootstrap)" "debootstrap missing (the image test's local Debian 12 base)" "apt-get install -y debootstrap"
check dockerd 'command -v dockerd' "$(command -v dockerd)" "dockerd missing (container tests)" "deploy/local/docker.sh install"
check setpriv 'command -v setpriv' "$(command -v setpriv)" "setpriv missing (the privileges test drops to the DaemonSet's capabilities)" "apt-get install -y util-linux"
check chromium 'command -v chromium' "$(chromium --version 2>/dev/null)" "chromium missing (the report test renders the HTML report in it)" "apt-get install -y chromium"
check ctr 'command -v ctr' "$(command -v ctr)" "ctr missing (containerd tests, the seccomp test)" "deploy/local/containerd.sh install"
check registry '[ -n "$(find "$ROOT/.cache/registry/dist" -maxdepth 1 -name "*-runner.jar" 2>/dev/null)" ]' "schema registry in .cache/registry" "schema registry (Apicurio) not installed (registry-mode tests)" "deploy/local/registry.sh install"
check go 'bash "$ROOT/deploy/local/go.sh" status' "$(bash "$ROOT/deploy/local/go.sh" status 2>&1 | sed 's/^\[go.sh\] status: //')" "no Go >= 1.26.5 (builds the Kubernetes test tools)" "deploy/local/go.sh bin (installs Go 1.27.3 into ~/.cache/ktrail-go)"
check kube-tools '[ -x "$(bash "$ROOT/deploy/local/kube.sh" bin)/kube-apiserver" ] && [ -x "$(bash "$ROOT/deploy/local/kube.sh" bin)/helm" ]' "kine, kube-apiserver, kubectl, helm in .cache/kube" "Kubernetes test tools not built (./ktrail test builds them: ~15 min of CPU and ~7 GB of Go caches, once)" "deploy/local/kube.sh install"
check node_modules '[ -d "$ROOT/node_modules/kafkajs" ]' "npm packages installed" "npm packages not installed" "deploy/local/install.sh (npm ci on .cache/node's Node)"
for port in 19092 19093 9464 9465 8124; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    owner="$(ss -ltnpH "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\"\([^\"]*\)\".*/\1/p' | head -1)"
    case "$owner" in
      java | node) ok "port $port" "in use by ktrail's own $owner (reused)" ;;
      *) bad "port $port" "in use by ${owner:-another process}" "stop it or set KTRAIL_* port overrides (see README)" ;;
    esac
  else
    ok "port $port" "free"
  fi
done
free_gb="$(df -BG --output=avail "$ROOT" | tail -1 | tr -dc 0-9)"
check disk '[ "$free_gb" -ge 5 ]' "${free_gb} GiB free" "only ${free_gb} GiB free in $ROOT" "free at least 5 GiB"

if [ "$failures" -gt 0 ]; then
  echo "preflight: $failures prerequisite(s) missing (deploy/local/install.sh up|test installs the packages)"
  exit 1
fi
echo "preflight: all prerequisites present"
