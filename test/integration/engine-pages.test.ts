// The embedded engine's startup pages (processor/src/clickhouse/client.ts
// releaseEngineStartupPages) against the real kernel and the real libchdb.so: after a store
// opens and migrates, its library's resident pages go back to the kernel, the store still
// inserts, merges and answers, and what that use brings back stays well under what startup held.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect } from 'vitest';
import { REPO_ROOT } from '../../common/repo-root.js';
import { itReal } from '../support/real.js';

const run = promisify(execFile);
const MiB = 2 ** 20;

describe('engine startup pages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ktrail-engine-pages-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  itReal(undefined)('leave memory once the store is open, and the store works after', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'test/support/engine-pages-child.ts', join(dir, 'chdb')],
      { cwd: REPO_ROOT, timeout: 170_000, env: { ...process.env, KTRAIL_LOG_LEVEL: 'warn' } },
    );
    const r = JSON.parse(stdout.trim().split('\n').at(-1) as string) as {
      opened: number;
      released: {
        mappings: number;
        advisedBytes: number;
        residentBefore: number;
        residentAfter: number;
      } | null;
      afterRelease: number;
      afterUse: number;
      answer: Array<{ n: string | number; s: string | number }>;
    };
    const mib = (b: number) => Math.round(b / MiB);
    console.log(
      `libchdb.so resident: opened ${mib(r.opened)} MiB, after release ${mib(r.afterRelease)}, ` +
        `after 20 inserts, a merge and a query ${mib(r.afterUse)}`,
    );
    expect(r.released?.mappings).toBeGreaterThanOrEqual(2);
    expect(r.opened).toBeGreaterThan(100 * MiB);
    expect(r.opened - r.afterRelease).toBeGreaterThan(64 * MiB);
    expect(r.afterUse).toBeLessThan(r.opened - 32 * MiB);
    expect(Number(r.answer[0]?.n)).toBe(200_000);
    expect(Number(r.answer[0]?.s)).toBe((199_999 * 200_000) / 2);
  });
});
