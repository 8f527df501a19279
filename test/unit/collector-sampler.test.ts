// The sampler's delta rules (baseline, new cgroup, counter reset) on map readings laid out as
// the addon returns them, and memory samples from cgroupfs-shaped files in a temp dir.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixedBootClock } from '../../collector/src/clock.js';
import { createSampler, mapDeltas } from '../../collector/src/sampler.js';

const key = (id: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(id);
  return b;
};
const value = (...lanes: bigint[]): Buffer => {
  const b = Buffer.alloc(lanes.length * 8);
  for (const [i, v] of lanes.entries()) b.writeBigUInt64LE(v, i * 8);
  return b;
};

const dir = mkdtempSync(join(tmpdir(), 'ktrail-sampler-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('map deltas', () => {
  it('first reading is a baseline; then deltas, new cgroups in full, resets restart', () => {
    const first = mapDeltas(undefined, [[key(1n), value(100n, 5n)]], 1_000n);
    expect(first.deltas).toEqual([]);
    const second = mapDeltas(
      first.next,
      [
        [key(1n), value(160n, 7n)],
        [key(2n), value(30n, 1n)],
      ],
      3_000n,
    );
    expect(second.deltas).toEqual([
      { cgroupId: 1n, delta: [60n, 2n], intervalNs: 2_000n },
      { cgroupId: 2n, delta: [30n, 1n], intervalNs: 2_000n },
    ]);
    const third = mapDeltas(
      second.next,
      [
        [key(1n), value(160n, 7n)], // unchanged: no sample
        [key(2n), value(10n, 1n)], // went down: the entry was recreated
      ],
      4_000n,
    );
    expect(third.deltas).toEqual([{ cgroupId: 2n, delta: [10n, 1n], intervalNs: 1_000n }]);
  });
});

describe('sampler', () => {
  it('emits cpu/net/block samples from maps and memory samples from cgroupfs', () => {
    const cg = join(dir, 'docker', 'abc');
    mkdirSync(cg, { recursive: true });
    writeFileSync(join(cg, 'memory.current'), '1048576\n');
    writeFileSync(join(cg, 'memory.peak'), '2097152\n');
    writeFileSync(join(cg, 'memory.max'), 'max\n');
    writeFileSync(join(cg, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');

    let cpu = 1_000n;
    const block = (n: bigint) =>
      value(n, 2n * n, 1n, 2n, ...Array.from({ length: 32 }, (_, i) => (i === 3 ? n : 0n)));
    const maps: Record<string, () => Array<[Buffer, Buffer]>> = {
      kt_cpu: () => [[key(7n), value(cpu, 10n)]],
      kt_net: () => [[key(7n), value(5n, 1n, 6n, 1n)]],
      kt_block: () => [[key(7n), block(cpu)]],
    };
    let now = 10_000_000_000n;
    const clock = { ...fixedBootClock('b', 0n), bootNowNs: () => now };
    const sampler = createSampler({
      intervalMs: 1_000,
      clock,
      readMap: (name) => (maps[name] ?? (() => []))(),
      memoryTargets: () => [{ cgroupId: 7n, dir: cg }],
    });
    const baseline = sampler.sampleNow();
    // Maps: baseline only. Memory: a gauge, sampled every time.
    expect(baseline.map((e) => e.kind)).toEqual(['memory_sample']);
    expect(baseline[0]).toMatchObject({
      cgroupId: 7n,
      currentBytes: 1_048_576n,
      peakBytes: 2_097_152n,
      limitBytes: 0n,
      oomEvents: 1n,
    });

    cpu = 1_500n;
    now += 1_000_000_000n;
    writeFileSync(join(cg, 'memory.events'), 'oom_kill 3\n');
    const next = sampler.sampleNow();
    const byKind = Object.fromEntries(next.map((e) => [e.kind, e]));
    expect(Object.keys(byKind).sort()).toEqual(['block_sample', 'cpu_sample', 'memory_sample']);
    expect(byKind.cpu_sample).toMatchObject({
      cpuNs: 500n,
      switches: 0n,
      intervalNs: 1_000_000_000n,
      tsNs: now,
    });
    expect(byKind.block_sample).toMatchObject({ readBytes: 500n, writeBytes: 1_000n, readIos: 0n });
    expect((byKind.block_sample as { latencyHist: bigint[] }).latencyHist[3]).toBe(500n);
    expect(byKind.memory_sample).toMatchObject({ oomEvents: 2n });
  });

  it('a missing map or a vanished cgroup is skipped, not fatal', () => {
    const sampler = createSampler({
      intervalMs: 1_000,
      clock: fixedBootClock('b', 0n),
      readMap: () => {
        throw new Error('map kt_cpu not found');
      },
      memoryTargets: () => [{ cgroupId: 9n, dir: join(dir, 'gone') }],
    });
    expect(sampler.sampleNow()).toEqual([]);
  });
});
