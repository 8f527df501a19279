#!/usr/bin/env bash
# Installs what test/unit/avro-java-interop.test.ts needs: a JDK (the test runs a one-file
# Java program, which needs the compiler) and Apache Avro for Java from Maven Central, copied
# into .cache/avro-java. Idempotent: skips what is already there. The interop test runs it
# itself with KTRAIL_INTEROP_NO_APT=1 (jars only) when the jars are missing.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIBS=$ROOT/.cache/avro-java
say() { echo "[schemas/interop] $*"; }

if [ "${KTRAIL_INTEROP_NO_APT:-0}" = 1 ]; then
  say "KTRAIL_INTEROP_NO_APT=1: not installing Debian packages"
elif ! command -v javac >/dev/null || ! command -v mvn >/dev/null; then
  say "installing openjdk-17-jdk-headless and maven (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y openjdk-17-jdk-headless maven
else
  say "javac and mvn present, skipping apt"
fi

want=$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1)
if [ -f "$LIBS/.pom.sha256" ] && [ "$(cat "$LIBS/.pom.sha256")" = "$want" ]; then
  say "Avro jars already in $LIBS, skipping"
  exit 0
fi
say "resolving Apache Avro for Java from Maven Central into $LIBS"
rm -rf "$LIBS.tmp"
mkdir -p "$LIBS.tmp"
mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp"
rm -rf "$LIBS"
mv "$LIBS.tmp" "$LIBS"
echo "$want" >"$LIBS/.pom.sha256"
say "installed $(find "$LIBS" -name '*.jar' | wc -l) jars"
