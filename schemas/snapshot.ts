// Releases the working schemas: for each schema whose canonical form differs from its
// latest schemas/history/<Name>/vN.avsc, writes v(N+1).avsc (self-contained, docs kept).
// Run after changing a schema, then run the tests: schemas-compat checks the new version
// against every previous one. Run: npx tsx schemas/snapshot.ts
import { mkdirSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { HISTORY_DIR, loadCurrentSchemas, loadHistorySchemas, SCHEMA_NAMES } from './catalog.js';
import { parsingCanonicalForm } from './fingerprint.js';

export function snapshot(): string[] {
  const written: string[] = [];
  const current = loadCurrentSchemas();
  for (const name of SCHEMA_NAMES) {
    const history = loadHistorySchemas(name);
    const latest = history.at(-1);
    if (latest && parsingCanonicalForm(latest.schema) === parsingCanonicalForm(current[name])) continue;
    const version = (latest?.version ?? 0) + 1;
    mkdirSync(`${HISTORY_DIR}${name}`, { recursive: true });
    const path = `${HISTORY_DIR}${name}/v${version}.avsc`;
    writeFileSync(path, `${JSON.stringify(current[name], null, 2)}\n`);
    written.push(path);
  }
  return written;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const written = snapshot();
  console.log(written.length ? written.map((p) => `wrote ${p}`).join('\n') : 'history is up to date');
}
