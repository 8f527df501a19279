#!/bin/sh
# `collector ...` or `processor ...`: runs the matching CLI, compiled (npm run build:js), with
# the rest of the arguments. The image's entrypoint, and what the collector benchmark runs.
# `run-as collector|processor SCRIPT.ts ...`: a TypeScript entry run with that process's Node
# flags and environment (./ktrail up's children, the processor benchmark's in-process processor).
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
# glibc gives threads that allocate (libuv pool, zstd, chDB) arenas of their own, up to 8 per
# core, and returns little of them: two keep RSS 15-30 MiB lower at full rate, with no CPU
# cost measured (docs/benchmarks.md, Collector).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
# Node flags per process. The collector: young generation capped at 2 MiB per semi-space. Its
# Kafka sink scavenges every few MiB of Buffers anyway (collector/src/buffer-reclaim.ts), so a
# larger one only held memory: RSS at full speed ~136 MiB against ~145 with 8, CPU at 10k
# events/s unchanged. The processor: 8 MiB. Its rows live until their cut, whatever the young
# generation's size, and V8 sizes it by the machine (64 MiB per semi-space with 24 GiB and no
# cgroup limit): 8 holds a backlog drain ~150 MiB lower than that, and 20-40 MiB lower than 16,
# at the same CPU (docs/perf-log.md).
node_flags() {
  case "$1" in
    collector) echo "--max-semi-space-size=2" ;;
    processor) echo "--max-semi-space-size=8" ;;
  esac
}
cmd="$1"
[ $# -gt 0 ] && shift
case "$cmd" in
  collector | processor)
    if [ ! -f "$root/dist/$cmd/src/cli.js" ]; then
      echo "$root/dist/$cmd/src/cli.js is missing: run npm run build:js" >&2
      exit 2
    fi
    # shellcheck disable=SC2046 # the flags are words
    exec node $(node_flags "$cmd") "$root/dist/$cmd/src/cli.js" "$@"
    ;;
  run-as)
    role="${1:-}"
    case "$role" in collector | processor) shift ;; *) echo "usage: run-as collector|processor SCRIPT.ts [args]" >&2; exit 2 ;; esac
    # shellcheck disable=SC2046 # the flags are words
    exec node $(node_flags "$role") --import tsx "$@"
    ;;
  *) echo "usage: collector|processor [--config FILE] [options] | run-as collector|processor SCRIPT.ts [args]" >&2; exit 2 ;;
esac
