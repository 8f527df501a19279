// The build that ships: `npm run build:js` compiles collector, processor, common and schemas
// into dist/, and the image's entrypoint (deploy/docker/entrypoint.sh) runs it. These run
// the compiled CLIs through that entrypoint, so every file found from the checkout's root
// (schemas, migrations, protos, native builds: common/repo-root.ts) is found from dist/ too.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticCapture } from '../../bench/collector/synthetic.js';
import { REPO_ROOT } from '../../common/repo-root.js';

const run = promisify(execFile);
const entrypoint = join(REPO_ROOT, 'deploy/docker/entrypoint.sh');
const dir = mkdtempSync(join(tmpdir(), 'ktrail-compiled-'));

beforeAll(async () => {
  await run('npm', ['run', '--silent', 'build:js'], { cwd: REPO_ROOT, timeout: 180_000 });
}, 200_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('compiled build through the image entrypoint', () => {
  it('the collector decodes a replay (--dry-run)', async () => {
    const file = join(dir, 'replay.ktcap');
    const written = await writeSyntheticCapture(file, { records: 500, perBatch: 100 });
    const { stdout } = await run('sh', [entrypoint, 'collector', '--dry-run', '--replay', file], {
      cwd: tmpdir(), // nothing may depend on the working directory
      maxBuffer: 64 * 1024 * 1024,
      timeout: 60_000,
    });
    expect(stdout.split('\n').filter((l) => l.startsWith('{"kind"'))).toHaveLength(written.valid);
  }, 90_000);

  it('the processor applies every migration to a fresh chDB store (--migrate-only)', async () => {
    const { stdout } = await run(
      'sh',
      [entrypoint, 'processor', '--migrate-only', '--chdb-path', join(dir, 'chdb')],
      { cwd: tmpdir(), timeout: 120_000 },
    );
    const applied = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; migration?: string })
      .filter((l) => l.msg === 'applying migration');
    expect(applied.map((l) => l.migration)).toContain('0001_event_tables.sql');
  }, 150_000);

  it('names its commands when given another', async () => {
    const err = await run('sh', [entrypoint, 'nothing'], { cwd: tmpdir() }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr).toContain('usage: collector|processor');
  });
});
