#!/usr/bin/env bash
# The full test suite: lint, type check, then every vitest project (unit, integration, e2e)
# against the real services, which the suite's global setup starts. Ends with one plain
# summary line ("N passed, N failed, N skipped").
# No test skips: one whose real component is missing fails and says what is missing.
#   deploy/local/test.sh [vitest args...]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/local/node-env.sh
. deploy/local/node-env.sh
mkdir -p .cache
# Output that is not a terminal is a log file: no colour codes in it. vitest colours whenever
# CI is set, and FORCE_COLOR (any value) turns colour on for it too; NO_COLOR wins over both.
if [ ! -t 1 ]; then
  export NO_COLOR=1
  unset FORCE_COLOR
fi

echo "[test] lint: biome check"
npx biome check . || exit 1
echo "[test] types: tsc --noEmit"
npx tsc -p tsconfig.json || exit 1

# Whatever the run starts (brokers, dockerd, containerd, clickhouse-server) is stopped when it
# ends, pass or fail: `./ktrail stop` stops only what this checkout started. Everything the
# run writes to the temporary directory (tests' stores, logs, sockets, a failed test's
# leftovers) goes into one directory of its own, removed after that: a full run left ~780 MiB
# in /tmp otherwise. --one-file-system: never into something still mounted there.
RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/ktrail-test-run.XXXXXX")"
# As /tmp is: tests run processes as other users (uid 65534), and tsx keeps its cache here.
chmod 1777 "$RUN_TMP"
export TMPDIR="$RUN_TMP"
trap 'echo "[test] stopping the services this run started"; ./ktrail stop >/dev/null 2>&1 || true
  rm -rf --one-file-system "$RUN_TMP" 2>/dev/null || echo "[test] could not remove all of $RUN_TMP"' EXIT

# The Kubernetes control plane the k8s tests run (kine, kube-apiserver, kubectl, helm) builds
# from source once (cold: ~15 min of CPU), then this takes seconds. A failure here makes
# those tests fail saying why; the rest still runs.
echo "[test] kubernetes tools: deploy/local/kube.sh install"
bash deploy/local/kube.sh install || echo "[test] kube.sh install failed: the Kubernetes tests will say so"

echo "[test] vitest"
npx vitest run --reporter=default --reporter=json --outputFile.json=.cache/vitest-report.json "$@"
status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(".cache/vitest-report.json", "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' || echo "vitest: no report written (exit $status)"
exit $status
