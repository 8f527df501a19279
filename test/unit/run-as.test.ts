// A TypeScript entry run as the processor or the collector gets that process's Node flags and
// environment from the image's entrypoint: ./ktrail up and the processor benchmark run what ships.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runAs } from '../../common/run-as.js';

const script = join(mkdtempSync(join(tmpdir(), 'ktrail-run-as-')), 'show.ts');
writeFileSync(
  script,
  'const n: number = 1;\nconsole.log(JSON.stringify({ argv: process.execArgv, arena: process.env.MALLOC_ARENA_MAX, n, args: process.argv.slice(2) }));\n',
);

function show(role: 'collector' | 'processor'): { argv: string[]; arena: string; n: number; args: string[] } {
  const run = runAs(role, script, ['a b', 'c']);
  return JSON.parse(execFileSync(run.command, run.args, { env: run.env, encoding: 'utf8' }));
}

describe('run-as', () => {
  it("runs TypeScript with the processor's and the collector's own flags and environment", () => {
    const processor = show('processor');
    expect(processor.argv).toContain('--max-semi-space-size=8');
    expect(processor).toMatchObject({ arena: '2', n: 1, args: ['a b', 'c'] });
    expect(show('collector').argv).toContain('--max-semi-space-size=2');
  });

  it('refuses another role', () => {
    const run = runAs('processor', script);
    const other = spawnSync(run.command, [run.args[0] as string, 'run-as', 'sidecar', script], {
      env: run.env,
    });
    expect(other.status).toBe(2);
    expect(String(other.stderr)).toContain('usage: run-as');
  });
});
