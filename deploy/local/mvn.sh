#!/usr/bin/env bash
# Maven as the install steps run it (deploy/local/kafka.sh, schemas/interop/install.sh): batch
# mode, no colour, so its output is plain text in a terminal and in log files alike. Debian's
# Maven 3.8 still writes ANSI resets (ESC[0m) through jansi unless jansi.noreset is set as a
# JVM option; -D on the command line comes too late for it.
# Quiet (-q), unless its output goes to the install view's log (KTRAIL_STEP_STATUS set, see
# deploy/local/progress.sh), where "Downloaded from" lines count as the step's progress.
set -euo pipefail
quiet=(-q)
if [ -n "${KTRAIL_STEP_STATUS:-}" ]; then quiet=(); fi
MAVEN_OPTS="${MAVEN_OPTS:-} -Djansi.noreset=true" exec mvn ${quiet[@]+"${quiet[@]}"} -B -Dstyle.color=never "$@"
