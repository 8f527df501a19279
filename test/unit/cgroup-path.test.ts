// Runs the cgroup path corpus (test/fixtures/cgroup-paths/corpus.json) through the parser:
// every real-world layout, both drivers, v1 and v2, quirks and malformed paths.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type ContainerIdentity, parseCgroupPath } from '../../collector/src/containers/cgroup-path.js';

type Case = { path: string; cgroup: string; source: string; note?: string; expect: ContainerIdentity | null };
const corpus = JSON.parse(
  readFileSync(new URL('../fixtures/cgroup-paths/corpus.json', import.meta.url), 'utf8'),
) as { cases: Case[] };

describe('parseCgroupPath corpus', () => {
  it('has at least 40 paths, containers and non-containers, both drivers', () => {
    const cases = corpus.cases;
    expect(cases.length).toBeGreaterThanOrEqual(40);
    expect(cases.filter((c) => c.expect === null).length).toBeGreaterThan(10);
    expect(new Set(cases.flatMap((c) => (c.expect ? [c.expect.driver] : [])))).toEqual(
      new Set(['systemd', 'cgroupfs']),
    );
    expect(new Set(cases.map((c) => c.path)).size).toBe(cases.length);
  });

  it.each(corpus.cases.map((c) => [c.path || '(empty)', c] as const))('%s', (_name, c) => {
    expect(parseCgroupPath(c.path) ?? null).toEqual(c.expect);
  });
});
