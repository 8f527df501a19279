// Golden bytes: test/fixtures/avro/<Name>.json (the value) and <Name>.bin (its single-object
// encoding, header included). schemas-golden.test.ts fails when today's encoding of the
// .json differs from the .bin, so an encoding change is always deliberate. Each released
// version also keeps its bytes as <Name>.v<N>.bin (written once, never overwritten), and
// the test decodes all of them with today's reader: old messages keep landing.
//   npx tsx schemas/golden.ts            re-encode every .json into its .bin
//   npx tsx schemas/golden.ts --samples  also rewrite the .json files from schemas/samples.ts
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../common/repo-root.js';
import { SCHEMA_NAMES, type SchemaName } from './catalog.js';
import { catalog, createEncoder } from './codec.js';
import { fromFixtureJson, toFixtureJson } from './fixture-json.js';
import { SAMPLES } from './samples.js';

export const GOLDEN_DIR = `${join(REPO_ROOT, 'test/fixtures/avro')}/`;

export function goldenPaths(name: SchemaName): { json: string; bin: string } {
  return { json: `${GOLDEN_DIR}${name}.json`, bin: `${GOLDEN_DIR}${name}.bin` };
}

export function readGoldenValue(name: SchemaName): unknown {
  return fromFixtureJson(readFileSync(goldenPaths(name).json, 'utf8'));
}

export function regenerateGolden(fromSamples: boolean): string[] {
  mkdirSync(GOLDEN_DIR, { recursive: true });
  const written: string[] = [];
  for (const name of SCHEMA_NAMES) {
    const paths = goldenPaths(name);
    if (fromSamples || !existsSync(paths.json)) {
      writeFileSync(paths.json, toFixtureJson(SAMPLES[name]()));
      written.push(paths.json);
    }
    const value = readGoldenValue(name) as never;
    const bytes = createEncoder(name).encode(value);
    writeFileSync(paths.bin, bytes);
    written.push(paths.bin);
    // A released schema goes by its version number; 'current' means unreleased.
    const { version } = catalog().current[name];
    const versioned = `${GOLDEN_DIR}${name}.v${version}.bin`;
    if (typeof version === 'number' && !existsSync(versioned)) {
      writeFileSync(versioned, bytes);
      written.push(versioned);
    }
  }
  return written;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const path of regenerateGolden(process.argv.includes('--samples'))) console.log(`wrote ${path}`);
}
