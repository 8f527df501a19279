// The processor's own output schemas (schemas-local/: EnrichedBatch for the enriched topic,
// Alert for the alerts topic) and their released versions, kept like schemas/history:
// schemas-local/history/<Name>/vN.avsc, self-contained (event records inlined). A reader of
// those topics finds any message's writer schema among them by fingerprint, so messages
// written before an upgrade still read after it.
//
// After changing a local schema or an event record it inlines (schemas/events/), release it:
//   npx tsx processor/src/local-schemas.ts
// test/unit/processor-codec.test.ts fails until then, and checks compatibility.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../../common/repo-root.js';
import {
  expandSchema,
  loadEventDefinitions,
  loadHistorySchemas,
  type SchemaName,
} from '../../schemas/catalog.js';
import { parsingCanonicalForm } from '../../schemas/fingerprint.js';

export const LOCAL_SCHEMA_NAMES = ['EnrichedBatch', 'Alert'] as const;
export type LocalSchemaName = (typeof LOCAL_SCHEMA_NAMES)[number];

const LOCAL_DIR = join(REPO_ROOT, 'processor/src/schemas-local');
export const LOCAL_HISTORY_DIR = `${LOCAL_DIR}/history/`;

/** A local schema as the processor writes it now, with the event records it names inlined. */
export function localSchema(name: LocalSchemaName): Record<string, unknown> {
  const text = readFileSync(join(LOCAL_DIR, `${name}.avsc`), 'utf8');
  return expandSchema(JSON.parse(text) as Record<string, unknown>, loadEventDefinitions());
}

/** Released versions of a local schema, oldest first. */
export function localHistory(name: LocalSchemaName): { version: number; schema: Record<string, unknown> }[] {
  // The loader reads <dir><name>/vN.avsc; the name is only a folder name to it.
  return loadHistorySchemas(name as unknown as SchemaName, LOCAL_HISTORY_DIR);
}

/** Writes v(N+1).avsc for every local schema whose canonical form differs from its latest version. */
export function snapshotLocal(): string[] {
  const written: string[] = [];
  for (const name of LOCAL_SCHEMA_NAMES) {
    const current = localSchema(name);
    const latest = localHistory(name).at(-1);
    if (latest && parsingCanonicalForm(latest.schema) === parsingCanonicalForm(current)) continue;
    const path = `${LOCAL_HISTORY_DIR}${name}/v${(latest?.version ?? 0) + 1}.avsc`;
    mkdirSync(`${LOCAL_HISTORY_DIR}${name}`, { recursive: true });
    writeFileSync(path, `${JSON.stringify(current, null, 2)}\n`);
    written.push(path);
  }
  return written;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const written = snapshotLocal();
  console.log(written.length ? written.map((p) => `wrote ${p}`).join('\n') : 'history is up to date');
}
