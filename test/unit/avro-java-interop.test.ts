// Interop with Apache Avro for Java (the reference implementation): Java computes the same
// canonical form and CRC-64-AVRO fingerprint for every ktrail schema, decodes ktrail's
// single-object golden messages (its decoder checks the header and fingerprint itself), and
// what Java writes back decodes in ktrail to the same values (byte-identical when the schema
// has no map: Java's HashMap reorders map entries). Needs a JDK and the Avro jars:
// deploy/local/install.sh installs both (through schemas/interop/install.sh); without them
// the test fails and says what is missing.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect } from 'vitest';
import { HISTORY_DIR, SCHEMA_NAMES } from '../../schemas/catalog.js';
import { catalog, createSchemaResolver } from '../../schemas/codec.js';
import { GOLDEN_DIR, readGoldenValue } from '../../schemas/golden.js';
import { itReal } from '../support/real.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const JARS = `${ROOT}.cache/avro-java`;

/** What is missing for this test; deploy/local/install.sh (./ktrail test) installs both. */
function missingJava(): string | undefined {
  const hasJar = existsSync(JARS) && readdirSync(JARS).some((f) => /^avro-\d.*\.jar$/.test(f));
  const hasJavac =
    ['/usr/bin/javac', '/usr/local/bin/javac'].some((p) => existsSync(p)) || process.env.JAVA_HOME;
  if (!hasJavac) return 'needs a JDK (javac): run deploy/local/install.sh';
  if (!hasJar) return 'needs Apache Avro for Java in .cache/avro-java: run deploy/local/install.sh';
  return undefined;
}

interface JavaResult {
  schema: string;
  canonical: string;
  fingerprint: string;
  reencodedIdentical: boolean;
  reencoded: string;
  record: string;
}

const it = itReal(missingJava());

describe('Apache Avro for Java agrees', () => {
  it('canonical form, fingerprint, single-object decoding and re-encoding of every schema', async () => {
    const args = SCHEMA_NAMES.flatMap((name) => {
      const version = catalog().current[name].version;
      return [`${HISTORY_DIR}${name}/v${version}.avsc`, `${GOLDEN_DIR}${name}.bin`];
    });
    const { stdout } = await promisify(execFile)(
      'java',
      ['-cp', `${JARS}/*`, `${ROOT}schemas/interop/AvroInterop.java`, ...args],
      { maxBuffer: 16 * 1024 * 1024 },
    );
    const results = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as JavaResult);
    expect(results.map((r) => r.schema)).toEqual(SCHEMA_NAMES.map((n) => `io.ktrail.v1.${n}`));

    for (const [i, name] of SCHEMA_NAMES.entries()) {
      const java = results[i] as JavaResult;
      const ours = catalog().current[name];
      expect(java.canonical, `${name} canonical form`).toBe(ours.canonical);
      expect(BigInt(java.fingerprint), `${name} fingerprint`).toBe(BigInt.asIntN(64, ours.fingerprint));
      // Java-written bytes read back by ktrail to the same value (map entry order may differ).
      const back = createSchemaResolver().decode(Buffer.from(java.reencoded, 'hex'));
      expect(structuredClone(back.value), `${name} written by Java, read by ktrail`).toEqual(
        structuredClone(readGoldenValue(name)),
      );
      const hasMap = JSON.stringify(ours.schema).includes('"map"');
      if (!hasMap) expect(java.reencodedIdentical, `${name} bytes re-encoded by Java`).toBe(true);
    }
    const batch = (results[0] as JavaResult).record;
    expect(batch).toContain('"node": "node-a"');
    // u64 max travels as the 64 bits of a signed long: Java sees -1 (docs/schemas.md).
    expect(batch).toContain('"tsNs": -1');
    expect(batch).toContain('"args": ["curl", "-s", "http://svc.local/ä"]');
  }, 480_000);
});
