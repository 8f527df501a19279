#!/bin/sh
# `collector ...` or `processor ...`: runs the matching CLI, compiled (npm run build:js), with
# the rest of the arguments. The image's entrypoint, and what the collector benchmark runs.
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
# glibc gives threads that allocate (libuv pool, zstd, chDB) arenas of their own, up to 8 per
# core, and returns little of them: two keep RSS 15-30 MiB lower at full rate, with no CPU
# cost measured (docs/benchmarks.md, Collector).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
cmd="$1"
[ $# -gt 0 ] && shift
case "$cmd" in
  collector | processor)
    if [ ! -f "$root/dist/$cmd/src/cli.js" ]; then
      echo "$root/dist/$cmd/src/cli.js is missing: run npm run build:js" >&2
      exit 2
    fi
    # The collector: young generation capped at 2 MiB per semi-space. Its Kafka sink
    # scavenges every few MiB of Buffers anyway (collector/src/buffer-reclaim.ts), so a larger
    # one only held memory: RSS at full speed ~136 MiB against ~145 with 8, CPU at 10k
    # events/s unchanged (docs/perf-log.md, 2026-12-06). The processor's heap is chDB's business.
    flags=""
    [ "$cmd" = collector ] && flags="--max-semi-space-size=2"
    # shellcheck disable=SC2086 # flags is one word or none
    exec node $flags "$root/dist/$cmd/src/cli.js" "$@"
    ;;
  *) echo "usage: collector|processor [--config FILE] [options]" >&2; exit 2 ;;
esac
