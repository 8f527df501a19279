// The collector's step between decode and batching (collector/src/kernel-events.ts): cgroup
// events feed the resolver, and a memory cgroup's release record becomes the memory_sample of
// the v2 cgroup it belongs to: by its own id on v2, by path on a hybrid host's v1 memory
// hierarchy. Records are laid out as the kernel writes them (layout.ts) and decoded by the
// real decoder; the resolver is the real one on a temp directory; the sampler is the real
// one on cgroupfs-shaped files. What the kernel writes is tested in bpf-memory (root).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, assert, describe, expect, it } from 'vitest';
import { fixedBootClock } from '../../collector/src/clock.js';
import { createCollector, type EventSource } from '../../collector/src/collector.js';
import { CgroupResolver } from '../../collector/src/containers/cgroup-resolver.js';
import type { MessageSink } from '../../collector/src/kafka-sink.js';
import { createDecoder } from '../../collector/src/kernel/decode.js';
import {
  EVENT_TYPE,
  FLAG,
  KT_CGROUP_EVENT,
  KT_HEADER,
  KT_MEMORY_RELEASE,
  type StructLayout,
} from '../../collector/src/kernel/layout.js';
import { createKernelEventStage } from '../../collector/src/kernel-events.js';
import { createSampler } from '../../collector/src/sampler.js';
import { createEncoder, createEventBatchFramer } from '../../schemas/codec.js';
import type { KtrailEvent, MemorySample } from '../../schemas/types.js';

const dir = mkdtempSync(join(tmpdir(), 'ktrail-kernel-events-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MEMORY_HIERARCHY = 4;
const hex = (c: string) => c.repeat(64);

/** One record as the kernel lays it out: header, then the named fields. */
function record(
  layout: StructLayout,
  type: number,
  head: { cgroupId: bigint; tsNs?: bigint; flags?: number },
  fields: Record<string, number | bigint | string>,
): Buffer {
  const b = Buffer.alloc(layout.size);
  const h = KT_HEADER.fields;
  b.writeUInt16LE(type, h.type.offset);
  b.writeUInt16LE(head.flags ?? 0, h.flags.offset);
  b.writeUInt32LE(layout.size, h.size.offset);
  b.writeBigUInt64LE(head.tsNs ?? 1_000n, h.ts_ns.offset);
  b.writeBigUInt64LE(head.cgroupId, h.cgroup_id.offset);
  b.writeUInt32LE(4321, h.pid.offset); // the runtime that removed the cgroup
  b.writeUInt32LE(4321, h.tgid.offset);
  for (const [name, v] of Object.entries(fields)) {
    const f = layout.fields[name] as { offset: number; size: number };
    if (typeof v === 'string') b.write(v, f.offset, f.size - 1, 'utf8');
    else if (f.size === 8) b.writeBigUInt64LE(BigInt(v), f.offset);
    else b.writeUInt32LE(Number(v), f.offset);
  }
  return b;
}

const cgroupEvent = (kind: 'cgroup_mkdir' | 'cgroup_rmdir', id: bigint, path: string, hierarchyId = 0) =>
  record(KT_CGROUP_EVENT, EVENT_TYPE[kind], { cgroupId: id }, { level: 2, hierarchy_id: hierarchyId, path });

const release = (
  id: bigint,
  path: string,
  hierarchyId: number,
  values: Partial<Record<string, bigint>> = {},
) =>
  record(
    KT_MEMORY_RELEASE,
    EVENT_TYPE.memory_release,
    { cgroupId: id, tsNs: 5_000n, flags: FLAG.memoryRelease },
    {
      level: 2,
      hierarchy_id: hierarchyId,
      path,
      peak_bytes: values.peak ?? 67_366_912n,
      current_bytes: values.current ?? 204_800n,
      limit_bytes: values.limit ?? 0n,
      oom_kills: values.oomKills ?? 0n,
    },
  );

async function stageWithResolver() {
  const root = join(dir, `v2-${Math.random().toString(36).slice(2)}`);
  mkdirSync(root);
  const resolver = await CgroupResolver.create({ mountPoint: root });
  const decoder = createDecoder();
  const stage = createKernelEventStage({ resolver });
  const run = (...records: Buffer[]) => stage(decoder.decode(Buffer.concat(records), records.length));
  return { resolver, run };
}

describe('kernel event stage', () => {
  it('a v1 memory release becomes the memory_sample of the v2 cgroup at its path, mkdir in the same batch', async () => {
    const { run, resolver } = await stageWithResolver();
    const path = `/docker/${hex('a')}`;
    const out = run(
      cgroupEvent('cgroup_mkdir', 900n, path),
      cgroupEvent('cgroup_rmdir', 900n, path),
      release(31_913n, path, MEMORY_HIERARCHY, { limit: 33_554_432n, oomKills: 1n }),
    );
    expect(resolver.resolve(900n)?.removedNs).toBeDefined();
    expect(out.unattributed).toBe(0);
    expect(out.events.map((e) => e.kind)).toEqual(['cgroup_mkdir', 'cgroup_rmdir', 'memory_sample']);
    expect(out.events[2]).toEqual({
      kind: 'memory_sample',
      tsNs: 5_000n,
      cgroupId: 900n, // the v2 id, not the v1 memory cgroup's
      pid: 0,
      tgid: 0,
      flags: FLAG.memoryRelease,
      currentBytes: 204_800n,
      peakBytes: 67_366_912n,
      limitBytes: 33_554_432n,
      oomEvents: 1n,
    } satisfies MemorySample);
  });

  it('a v2 release keeps its own id; a v1 one with no v2 cgroup at its path is unattributed', async () => {
    const { run } = await stageWithResolver();
    const out = run(
      cgroupEvent('cgroup_mkdir', 7n, '/x'),
      release(70n, '/v1-only', MEMORY_HIERARCHY),
      release(8n, '/y', 0),
      cgroupEvent('cgroup_rmdir', 7n, '/x'),
    );
    expect(out.unattributed).toBe(1);
    expect(out.events.map((e) => [e.kind, e.cgroupId])).toEqual([
      ['cgroup_mkdir', 7n],
      ['memory_sample', 8n],
      ['cgroup_rmdir', 7n],
    ]);
  });

  it('a batch without releases is passed on as it is', async () => {
    const { run } = await stageWithResolver();
    const out = run(cgroupEvent('cgroup_mkdir', 7n, '/x'));
    expect(out).toMatchObject({ malformed: 0, unattributed: 0 });
    expect(out.events).toHaveLength(1);
    // Without a resolver (replay), only v2 releases can be attributed.
    const bare = createKernelEventStage();
    const d = createDecoder();
    expect(bare(d.decode(release(5n, '/a', MEMORY_HIERARCHY), 1))).toMatchObject({
      events: [],
      unattributed: 1,
    });
  });

  it('v2 removals, and only those, tell the map sampler to take the cgroup out of its maps', () => {
    const removed: bigint[] = [];
    const stage = createKernelEventStage({
      sampler: { cgroupRemoved: (id) => removed.push(id), memoryReleased: () => assert.fail('no release') },
    });
    const d = createDecoder();
    const batch = [
      cgroupEvent('cgroup_rmdir', 3n, '/a'),
      cgroupEvent('cgroup_rmdir', 4n, '/a', MEMORY_HIERARCHY),
      cgroupEvent('cgroup_mkdir', 5n, '/b'),
    ];
    expect(stage(d.decode(Buffer.concat(batch), batch.length)).events).toHaveLength(3);
    expect(removed).toEqual([3n]);
  });

  it('a failing resolver does not cost the batch its events', () => {
    const stage = createKernelEventStage({
      resolver: {
        apply: () => {
          throw new Error('bug');
        },
        idOfKnownPath: () => 3n,
      },
    });
    const d = createDecoder();
    const out = stage(
      d.decode(Buffer.concat([cgroupEvent('cgroup_mkdir', 3n, '/z'), release(9n, '/z', 4)]), 2),
    );
    expect(out.events.map((e) => [e.kind, e.cgroupId])).toEqual([
      ['cgroup_mkdir', 3n],
      ['memory_sample', 3n],
    ]);
  });

  it("OOM kills count from the sampler's last reading of the cgroup, even after it left the targets", async () => {
    const cg = join(dir, 'memory', 'docker', hex('b'));
    mkdirSync(cg, { recursive: true });
    writeFileSync(join(cg, 'memory.usage_in_bytes'), '1048576\n');
    writeFileSync(join(cg, 'memory.max_usage_in_bytes'), '2097152\n');
    writeFileSync(join(cg, 'memory.limit_in_bytes'), '9223372036854771712\n');
    writeFileSync(join(cg, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
    let targets = [{ cgroupId: 11n, dir: cg }];
    const sampler = createSampler({
      intervalMs: 1_000,
      clock: fixedBootClock('b', 0n),
      readMap: () => [],
      memoryTargets: () => targets,
    });
    expect(sampler.sampleNow()).toMatchObject([
      { kind: 'memory_sample', cgroupId: 11n, oomEvents: 2n, limitBytes: 0n },
    ]);
    targets = []; // the v2 cgroup went first; the v1 memory cgroup follows
    expect(sampler.sampleNow()).toEqual([]);
    const stage = createKernelEventStage({
      resolver: { apply: () => undefined, idOfKnownPath: () => 11n },
      sampler,
    });
    const d = createDecoder();
    const first = stage(d.decode(release(99n, `/docker/${hex('b')}`, 4, { oomKills: 3n }), 1));
    expect(first.events[0]).toMatchObject({ cgroupId: 11n, oomEvents: 1n, flags: FLAG.memoryRelease });
    // Used once: a second release of the same id (none should come) counts from zero.
    const again = stage(d.decode(release(99n, `/docker/${hex('b')}`, 4, { oomKills: 3n }), 1));
    expect(again.events[0]).toMatchObject({ oomEvents: 3n });
  });

  it('the collector counts unattributed records as captured and dropped: the accounting balances', async () => {
    const sent: number[] = [];
    const sink: MessageSink = {
      async send(messages) {
        for (const m of messages) sent.push(m.events);
        return { status: 'success' };
      },
      async close() {},
    };
    const { run } = await stageWithResolver();
    const batch = [cgroupEvent('cgroup_mkdir', 7n, '/x'), release(70n, '/v1-only', 4), release(7n, '/x', 0)];
    const source: EventSource = {
      start: (onBatch) => onBatch(Buffer.concat(batch), batch.length),
      stop() {},
    };
    const statsEncoder = createEncoder('CollectorStats');
    const collector = createCollector<KtrailEvent, never>({
      node: 'n',
      collectorVersion: 'test',
      settings: {
        batchMaxEvents: 100,
        batchMaxBytes: 100_000,
        batchMaxMs: 10_000,
        bufferMaxBytes: 1 << 20,
        bufferMaxMessages: 100,
        statsIntervalMs: 60_000,
        shutdownDeadlineMs: 5_000,
      },
      topics: { events: 'e', containers: 'c', stats: 's' },
      clock: fixedBootClock('00000000-0000-4000-8000-0000000000bb', 0n),
      source,
      decode: (buf) => run(buf),
      eventBatch: createEventBatchFramer(),
      encodeStats: (s) => statsEncoder.encode(s),
      sink,
    });
    await collector.start();
    const final = await collector.stop();
    expect(final).toMatchObject({ captured: 3, delivered: 2, droppedTotal: 1, unaccounted: 0 });
    expect(final.dropped.unattributed).toBe(1);
    expect(final.capturedByKind).toMatchObject({ cgroup_mkdir: 1, memory_sample: 1, unattributed: 1 });
  });
});
