// The checkout's root, found from this file: the nearest directory above it whose
// package.json is ktrail's. The same code runs from its TypeScript sources (tsx, tests) and
// compiled into dist/ (the image), so files next to the sources (schemas, protos,
// migrations, native builds) are found from here, never relative to the running file.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (
      existsSync(manifest) &&
      (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'ktrail'
    )
      return dir;
    if (dirname(dir) === dir) throw new Error(`no ktrail package.json above ${from}`);
  }
}

export const REPO_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
