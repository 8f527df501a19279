#!/bin/sh
# `collector ...` or `processor ...`: runs the matching CLI with the rest of the arguments.
set -e
cmd="$1"
shift
case "$cmd" in
  collector | processor) exec node --import tsx "/ktrail/$cmd/src/cli.ts" "$@" ;;
  *) echo "usage: collector|processor [--config FILE] [options]" >&2; exit 2 ;;
esac
