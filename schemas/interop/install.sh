#!/usr/bin/env bash
# Fetches Apache Avro for Java from Maven Central into .cache/avro-java for
# test/unit/avro-java-interop.test.ts (which also needs a JDK: the test runs a one-file Java
# program). Run by deploy/local/install.sh, which installs the JDK and Maven. Idempotent.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIBS=$ROOT/.cache/avro-java
say() { echo "[schemas/interop] $*"; }

command -v javac >/dev/null && command -v mvn >/dev/null ||
  { echo "[schemas/interop] needs javac and mvn: run deploy/local/install.sh" >&2; exit 1; }

want=$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1)
if [ -f "$LIBS/.pom.sha256" ] && [ "$(cat "$LIBS/.pom.sha256")" = "$want" ]; then
  say "Avro jars already in $LIBS, skipping"
  exit 0
fi
say "resolving Apache Avro for Java from Maven Central into $LIBS"
rm -rf "$LIBS.tmp"
mkdir -p "$LIBS.tmp"
bash "$ROOT/deploy/local/mvn.sh" -f "$HERE/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp"
rm -rf "$LIBS"
mv "$LIBS.tmp" "$LIBS"
echo "$want" >"$LIBS/.pom.sha256"
say "installed $(find "$LIBS" -name '*.jar' | wc -l) jars"
