// The sampler's delta rules (baseline, new cgroup, counter reset) on map readings laid out as
// the addon returns them, memory samples from cgroupfs-shaped files in a temp dir, and the map
// lifetime rules (removed cgroups read and deleted once, evictions counted) on a fake map.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { fixedBootClock } from '../../collector/src/clock.js';
import { mapDeltas, registerKernelMapMetrics } from '../../collector/src/kernel-maps.js';
import { createSampler, type SampleEvent } from '../../collector/src/sampler.js';

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

  it("a cgroup's release row reports only the OOM kills its periodic samples did not", () => {
    const cg = join(dir, 'docker', 'oom');
    mkdirSync(cg, { recursive: true });
    writeFileSync(join(cg, 'memory.current'), '1048576\n');
    writeFileSync(join(cg, 'memory.max'), '33554432\n');
    const sampler = createSampler({
      intervalMs: 1_000,
      clock: fixedBootClock('b', 0n),
      readMap: () => [],
      memoryTargets: () => [{ cgroupId: 8n, dir: cg }],
    });
    const release = (oomKills: bigint) => ({
      kind: 'memory_release' as const,
      tsNs: 5n,
      cgroupId: 8n,
      pid: 1,
      tgid: 1,
      flags: 16,
      level: 2,
      hierarchyId: 0,
      path: '/docker/oom',
      peakBytes: 33_554_432n,
      currentBytes: 0n,
      limitBytes: 33_554_432n,
      oomKills,
    });
    // The kill lands between two samples and before the removal: the sample reports it.
    writeFileSync(join(cg, 'memory.events'), 'oom_kill 0\n');
    expect(sampler.sampleNow()[0]).toMatchObject({ oomEvents: 0n });
    writeFileSync(join(cg, 'memory.events'), 'oom_kill 1\n');
    expect(sampler.sampleNow()[0]).toMatchObject({ oomEvents: 1n });
    expect(sampler.memoryReleased(release(1n), 8n)).toMatchObject({ flags: 16, oomEvents: 0n });
    // A kill after the last sample is the release row's; a cgroup never sampled reports all.
    writeFileSync(join(cg, 'memory.events'), 'oom_kill 1\n');
    sampler.sampleNow();
    expect(sampler.memoryReleased(release(3n), 8n)).toMatchObject({ oomEvents: 2n });
    expect(sampler.memoryReleased(release(3n), 8n)).toMatchObject({ oomEvents: 3n });
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

/** A kernel map stand-in: read returns every entry, take reads and deletes the asked ids. */
function fakeMaps() {
  const maps = new Map<string, Map<bigint, bigint[]>>([
    ['kt_cpu', new Map()],
    ['kt_net', new Map()],
    ['kt_block', new Map()],
  ]);
  const get = (name: string) => maps.get(name) as Map<bigint, bigint[]>;
  const taken: Array<{ map: string; ids: bigint[] }> = [];
  return {
    cpu: get('kt_cpu'),
    taken,
    readMap: (name: string): Array<[Buffer, Buffer]> =>
      [...get(name)].map(([id, lanes]) => [key(id), value(...lanes)]),
    takeMapEntries: (name: string, ids: bigint[]): Array<[Buffer, Buffer]> => {
      taken.push({ map: name, ids });
      const out: Array<[Buffer, Buffer]> = [];
      for (const id of ids) {
        const lanes = get(name).get(id);
        if (lanes === undefined) continue;
        get(name).delete(id);
        out.push([key(id), value(...lanes)]);
      }
      return out;
    },
  };
}

describe('map lifetime: removed cgroups', () => {
  const cpuOf = (events: ReturnType<ReturnType<typeof createSampler>['sampleNow']>, id: bigint) =>
    events
      .filter((e) => e.kind === 'cpu_sample' && e.cgroupId === id)
      .map((e) => (e as { cpuNs: bigint }).cpuNs);

  it("emits a removed cgroup's last counts once, deletes its entry, and takes a recreated one again", () => {
    const k = fakeMaps();
    let ms = 0;
    const sampler = createSampler({
      intervalMs: 1_000,
      clock: fixedBootClock('b', 0n),
      readMap: k.readMap,
      takeMapEntries: k.takeMapEntries,
      mapCapacity: () => 16_384,
      removedGraceMs: 10_000,
      now: () => ms,
    });
    k.cpu.set(1n, [1_000n, 10n]);
    k.cpu.set(5n, [100n, 1n]);
    sampler.sampleNow(); // baseline
    k.cpu.set(5n, [250n, 3n]); // its last counts, unread when it is removed
    sampler.cgroupRemoved(5n);
    const last = sampler.sampleNow();
    expect(cpuOf(last, 5n)).toEqual([150n]);
    expect(k.cpu.has(5n)).toBe(false);
    expect(k.taken).toEqual([{ map: 'kt_cpu', ids: [5n] }]); // only maps that held it
    expect(cpuOf(sampler.sampleNow(), 5n)).toEqual([]); // never again

    // Late activity (a dying task's last switch) recreates the entry: taken again, in full.
    k.cpu.set(5n, [7n, 1n]);
    ms += 5_000;
    expect(cpuOf(sampler.sampleNow(), 5n)).toEqual([7n]);
    expect(k.cpu.has(5n)).toBe(false);
    const cpuStats = sampler.mapStats().find((s) => s.map === 'kt_cpu');
    expect(cpuStats).toMatchObject({
      entries: 1,
      peakEntries: 2,
      maxEntries: 16_384,
      deleted: 2,
      evicted: 0,
    });

    // After the grace period the id is forgotten: a recreated entry stays (LRU's to free).
    ms += 10_001;
    k.cpu.set(5n, [3n, 1n]);
    expect(cpuOf(sampler.sampleNow(), 5n)).toEqual([3n]);
    expect(k.cpu.has(5n)).toBe(true);
  });

  it('a cgroup created and removed between two readings is emitted in full, once', () => {
    const k = fakeMaps();
    const sampler = createSampler({
      intervalMs: 1_000,
      clock: fixedBootClock('b', 0n),
      readMap: k.readMap,
      takeMapEntries: k.takeMapEntries,
    });
    sampler.sampleNow();
    k.cpu.set(9n, [42n, 2n]);
    sampler.cgroupRemoved(9n);
    expect(cpuOf(sampler.sampleNow(), 9n)).toEqual([42n]);
    expect(cpuOf(sampler.sampleNow(), 9n)).toEqual([]);
    expect(k.cpu.size).toBe(0);
  });

  it('counts entries that vanish or restart without a delete as evicted', () => {
    const k = fakeMaps();
    const sampler = createSampler({
      intervalMs: 1_000,
      clock: fixedBootClock('b', 0n),
      readMap: k.readMap,
      takeMapEntries: k.takeMapEntries,
    });
    k.cpu.set(1n, [10n, 1n]);
    k.cpu.set(2n, [10n, 1n]);
    sampler.sampleNow();
    k.cpu.delete(1n); // evicted
    k.cpu.set(2n, [4n, 1n]); // evicted and recreated
    const events = sampler.sampleNow();
    expect(cpuOf(events, 2n)).toEqual([4n]);
    expect(sampler.mapStats().find((s) => s.map === 'kt_cpu')).toMatchObject({ entries: 1, evicted: 2 });
  });

  it('a failing delete keeps the entry and its baseline: nothing counted twice', () => {
    const k = fakeMaps();
    let fail = true;
    const sampler = createSampler({
      intervalMs: 1_000,
      clock: fixedBootClock('b', 0n),
      readMap: k.readMap,
      takeMapEntries: (name, ids) => {
        if (fail) throw new Error('EPERM');
        return k.takeMapEntries(name, ids);
      },
    });
    k.cpu.set(3n, [10n, 1n]);
    sampler.sampleNow();
    k.cpu.set(3n, [15n, 2n]);
    sampler.cgroupRemoved(3n);
    expect(cpuOf(sampler.sampleNow(), 3n)).toEqual([5n]);
    expect(k.cpu.has(3n)).toBe(true);
    fail = false;
    k.cpu.set(3n, [18n, 3n]);
    expect(cpuOf(sampler.sampleNow(), 3n)).toEqual([3n]);
    expect(k.cpu.has(3n)).toBe(false);
  });

  it('a map that cannot be read keeps its previous reading (no double count after)', () => {
    const k = fakeMaps();
    let broken = false;
    const sampler = createSampler({
      intervalMs: 1_000,
      clock: fixedBootClock('b', 0n),
      readMap: (name) => {
        if (broken) throw new Error('EBADF');
        return k.readMap(name);
      },
    });
    k.cpu.set(1n, [100n, 1n]);
    sampler.sampleNow();
    broken = true;
    k.cpu.set(1n, [130n, 2n]);
    expect(sampler.sampleNow()).toEqual([]);
    broken = false;
    expect(cpuOf(sampler.sampleNow(), 1n)).toEqual([30n]);
  });

  it('exports occupancy, capacity, deletions and evictions per map on /metrics', async () => {
    const k = fakeMaps();
    const sampler = createSampler({
      intervalMs: 1_000,
      clock: fixedBootClock('b', 0n),
      readMap: k.readMap,
      takeMapEntries: k.takeMapEntries,
      mapCapacity: (name) => (name === 'kt_block' ? undefined : 16_384),
    });
    const registry = new Registry();
    registerKernelMapMetrics(registry, sampler);
    k.cpu.set(1n, [1n, 1n]);
    k.cpu.set(2n, [1n, 1n]);
    sampler.sampleNow();
    sampler.cgroupRemoved(2n);
    sampler.sampleNow();
    const text = await registry.metrics();
    expect(text).toContain('ktrail_collector_kernel_map_entries{map="kt_cpu"} 1');
    expect(text).toContain('ktrail_collector_kernel_map_peak_entries{map="kt_cpu"} 2');
    expect(text).toContain('ktrail_collector_kernel_map_max_entries{map="kt_cpu"} 16384');
    expect(text).not.toContain('ktrail_collector_kernel_map_max_entries{map="kt_block"}');
    expect(text).toContain('ktrail_collector_kernel_map_deleted_total{map="kt_cpu"} 1');
    expect(text).toContain('ktrail_collector_kernel_map_evicted_total{map="kt_net"} 0');
  });
});

describe('map lifetime: many removals between readings', () => {
  it('takes removed cgroups at once past the threshold, and emits their counts once', async () => {
    const k = fakeMaps();
    const emitted: SampleEvent[] = [];
    const sampler = createSampler({
      intervalMs: 3_600_000, // only the first reading and sampleNow() below
      clock: fixedBootClock('b', 0n),
      readMap: k.readMap,
      takeMapEntries: k.takeMapEntries,
      removedTakeThreshold: 3,
    });
    for (const id of [1n, 2n, 3n, 4n]) k.cpu.set(id, [10n, 1n]);
    sampler.start((events) => emitted.push(...events)); // first reading: the baseline
    onTestFinished(() => sampler.stop());
    for (const id of [1n, 2n, 3n]) k.cpu.set(id, [15n, 2n]);
    k.cpu.set(5n, [8n, 1n]); // appeared after the baseline: taken in full
    sampler.cgroupRemoved(1n);
    sampler.cgroupRemoved(5n);
    await new Promise((r) => setImmediate(r));
    expect(k.taken).toEqual([]); // 2 pending: below the threshold
    sampler.cgroupRemoved(2n);
    await new Promise((r) => setImmediate(r));
    expect(k.taken.map((t) => t.map)).toEqual(['kt_cpu', 'kt_net', 'kt_block']);
    expect([...k.cpu.keys()].sort()).toEqual([3n, 4n]);
    const cpu = (events: SampleEvent[]) =>
      events
        .filter((e) => e.kind === 'cpu_sample')
        .map((e) => [e.cgroupId, (e as { cpuNs: bigint }).cpuNs])
        .sort((a, b) => Number((a[0] as bigint) - (b[0] as bigint)));
    expect(cpu(emitted)).toEqual([
      [1n, 5n],
      [2n, 5n],
      [5n, 8n],
    ]);
    // The next reading has the live ones only; nothing taken is counted again or as evicted.
    expect(cpu(sampler.sampleNow())).toEqual([[3n, 5n]]);
    expect(sampler.mapStats().find((s) => s.map === 'kt_cpu')).toMatchObject({
      deleted: 3,
      evicted: 0,
      entries: 2,
    });
  });
});
