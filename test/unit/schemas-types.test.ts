// schemas/types.ts is generated from the .avsc files; this keeps the two in sync.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SCHEMAS_DIR } from '../../schemas/catalog.js';
import { renderTypes } from '../../schemas/generate-types.js';

// The generator's output is biome-formatted on write: compare without layout.
const normalize = (ts: string) =>
  ts.replace(/\s+/g, '').replace(/=\|/g, '=').replace(/,}/g, '}').replace(/;}/g, '}');

describe('generated TypeScript types', () => {
  it('schemas/types.ts matches the schemas (else run npx tsx schemas/generate-types.ts)', () => {
    expect(normalize(readFileSync(`${SCHEMAS_DIR}types.ts`, 'utf8'))).toBe(normalize(renderTypes()));
  });

  it('every event kind has an interface with its kind literal', () => {
    const text = renderTypes();
    for (const kind of ['proc_exec', 'tcp_close', 'memory_sample'])
      expect(text).toContain(`kind: '${kind}';`);
    expect(text).toMatch(/cgroupId: bigint;/);
    expect(text).toMatch(/pid: number;/);
  });
});
