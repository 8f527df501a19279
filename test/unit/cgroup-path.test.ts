// Runs the cgroup path corpus (test/fixtures/cgroup-paths/corpus.json) through the parser:
// every real-world layout, both drivers, v1 and v2, quirks and malformed paths.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type ContainerIdentity, parseCgroupPath } from '../../collector/src/containers/cgroup-path.js';
import { cgroupsPathToPath } from '../../collector/src/containers/providers/containerd.js';
import { rfc3339ToNs } from '../../collector/src/containers/types.js';

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

describe('OCI cgroupsPath -> hierarchy path (containerd spec fallback)', () => {
  const id = 'ab'.repeat(32);
  it('expands systemd slice:prefix:name the way systemd nests slices', () => {
    const uid = '0f0e0d0c_0b0a_0908_0706_050403020100';
    const path = cgroupsPathToPath(`kubepods-burstable-pod${uid}.slice:cri-containerd:${id}`);
    expect(path).toBe(
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid}.slice/cri-containerd-${id}.scope`,
    );
    expect(parseCgroupPath(path)).toMatchObject({ runtime: 'containerd', containerId: id, qos: 'burstable' });
    expect(cgroupsPathToPath(`system.slice:docker:${id}`)).toBe(`/system.slice/docker-${id}.scope`);
  });
  it('keeps cgroupfs paths as they are', () => {
    expect(cgroupsPathToPath(`/k8s.io/${id}`)).toBe(`/k8s.io/${id}`);
    expect(cgroupsPathToPath(`default/${id}`)).toBe(`/default/${id}`);
  });
});

describe('rfc3339ToNs', () => {
  it('keeps nanoseconds and treats Go zero time as missing', () => {
    expect(rfc3339ToNs('2026-11-25T20:00:02.123456789Z')).toBe(
      BigInt(Date.parse('2026-11-25T20:00:02Z')) * 1_000_000n + 123_456_789n,
    );
    expect(rfc3339ToNs('2026-11-25T21:00:02.5+01:00')).toBe(
      BigInt(Date.parse('2026-11-25T20:00:02Z')) * 1_000_000n + 500_000_000n,
    );
    expect(rfc3339ToNs('0001-01-01T00:00:00Z')).toBeUndefined();
    expect(rfc3339ToNs('')).toBeUndefined();
    expect(rfc3339ToNs('not a time')).toBeUndefined();
  });
});
