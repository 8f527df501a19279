import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FIRST_QUESTIONS } from '../../deploy/clickhouse/queries.js';
import { withReference } from '../../deploy/local/config-reference.js';

describe('README', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

  it('has the configuration reference in sync with the config schema', () => {
    // Regenerate with: npx tsx deploy/local/config-reference.ts --write
    expect(readme).toBe(withReference(readme));
  });

  it('shows the same first questions as the banner of ./ktrail up', () => {
    for (const q of FIRST_QUESTIONS) {
      expect(readme).toContain(`# ${q.question}`);
      expect(readme).toContain(`./ktrail query "${q.sql}"`);
    }
  });

  it('has exactly two quickstart commands', () => {
    const quickstart = readme.split('## Quickstart')[1]?.split('```sh')[1]?.split('```')[0] ?? '';
    const commands = quickstart.split('\n').filter((line) => line.trim() && !line.trim().startsWith('#'));
    expect(commands.map((c) => c.split('#')[0]?.trim())).toEqual(['./ktrail up', './ktrail test']);
  });
});
