import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isContainerCgroupPath } from '../../collector/src/containers/cgroup-path.js';
import { AlertEngine } from '../../processor/src/alerts.js';
import { coPartition } from '../../processor/src/assigner.js';
import { applyJoin, markPending } from '../../processor/src/join-identity.js';
import { type ContainerMeta, MetadataTable } from '../../processor/src/metadata-table.js';
import {
  assignmentStart,
  decodeCut,
  dedupToken,
  type EventRow,
  encodeCut,
  eventTables,
  PartitionBatch,
} from '../../processor/src/partition-batch.js';
import { dateTime64, flatRow } from '../../processor/src/rows.js';
import { IDENTITY_COLUMNS } from '../../processor/src/workload.js';
import { addTestEvent, buildMessageRows, testEventRow } from '../support/event-row.js';

/** An event's row as the pipeline builds it, of node n1; joined with container `containerId` when given. */
function eventRow(
  kind: string,
  fields: Record<string, unknown> = {},
  timeNs = 0n,
  containerId?: string,
): EventRow {
  const row = testEventRow(kind, fields, { node: 'n1', timeNs });
  if (containerId !== undefined) applyJoin(row, meta({ containerId }));
  return row;
}

function meta(over: Partial<ContainerMeta> = {}): ContainerMeta {
  return {
    node: 'n1',
    cgroupId: 42n,
    containerId: 'c42',
    runtime: 'docker',
    cgroupPath: '/docker/c42',
    name: 'web',
    image: 'img:1',
    labels: {},
    pod: '',
    podUid: '',
    namespace: '',
    workloadKind: '',
    workload: '',
    runtimeNamespace: '',
    startedAtNs: 1_000n,
    stoppedAtNs: 0n,
    updatedAtNs: 1_000n,
    state: 'RUNNING',
    ...over,
  };
}

describe('co-partitioned assignment', () => {
  it.each([1, 2, 3, 5])('gives partition p of every topic to one member (%i members)', (n) => {
    const members = Array.from({ length: n }, (_, i) => `m-${i}`);
    const counts = new Map([
      ['events', 6],
      ['containers', 6],
    ]);
    const out = coPartition(members, counts);
    const owner = new Map<string, string>();
    let total = 0;
    for (const [member, byTopic] of out) {
      for (const [topic, parts] of Object.entries(byTopic)) {
        for (const p of parts) {
          total++;
          const prev = owner.get(`${topic}/${p}`);
          expect(prev).toBeUndefined();
          owner.set(`${topic}/${p}`, member);
        }
      }
    }
    expect(total).toBe(12);
    for (let p = 0; p < 6; p++) expect(owner.get(`events/${p}`)).toBe(owner.get(`containers/${p}`));
    const loads = [...out.values()].map((t) => t.events?.length ?? 0);
    expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(1);
  });
});

describe('metadata table', () => {
  it('joins the version valid at the event time', () => {
    const t = new MetadataTable(10n);
    t.upsert(meta({ updatedAtNs: 1_000n, pod: 'v1' }));
    t.upsert(meta({ updatedAtNs: 5_000n, pod: 'v2' }));
    expect(t.lookup('n1', 42n, 500n)?.pod).toBe('v1'); // before start: still this cgroup
    expect(t.lookup('n1', 42n, 4_999n)?.pod).toBe('v1');
    expect(t.lookup('n1', 42n, 5_000n)?.pod).toBe('v2');
    expect(t.lookup('n1', 43n, 5_000n)).toBeUndefined();
    expect(t.lookup('n2', 42n, 5_000n)).toBeUndefined();
    t.upsert(meta({ updatedAtNs: 5_000n, pod: 'v2' })); // re-read of the compacted topic
    expect(t.stats().versions).toBe(2);
  });

  it('joins only a record that names the container and its image; the first such for earlier events', () => {
    const t = new MetadataTable(10n);
    // The collector's first record of a new cgroup: its path, no name (kernel mkdir).
    t.upsert(meta({ name: '', image: '', startedAtNs: 1_000n, updatedAtNs: 1_001n, state: 'RUNNING' }));
    expect(t.lookup('n1', 42n, 1_050n)).toBeUndefined();
    expect(t.named('n1', 42n)).toBeUndefined();
    expect(t.newest('n1', 42n)?.containerId).toBe('c42');
    expect(t.newest('n1', 43n)).toBeUndefined();
    t.upsert(meta({ name: 'web', image: '', updatedAtNs: 1_100n })); // a name, no image yet
    expect(t.lookup('n1', 42n, 1_150n)).toBeUndefined();
    // The runtime's record comes after the container is gone: it names every event of it.
    t.upsert(
      meta({ name: 'web', image: 'img:1', stoppedAtNs: 1_060n, updatedAtNs: 1_200n, state: 'REMOVED' }),
    );
    expect(t.lookup('n1', 42n, 1_050n)).toMatchObject({ name: 'web', image: 'img:1' });
    expect(t.lookup('n1', 42n, 5_000n)?.state).toBe('REMOVED');
    expect(t.named('n1', 42n)?.image).toBe('img:1');
  });

  it('evicts stopped containers after the retention, and counts it', () => {
    const t = new MetadataTable(1_000n);
    t.upsert(meta({ cgroupId: 1n + 100n, stoppedAtNs: 2_000n, updatedAtNs: 2_000n }));
    t.upsert(meta({ cgroupId: 200n }));
    expect(t.evictStopped(2_500n)).toBe(0);
    expect(t.evictStopped(3_001n)).toBe(1);
    expect(t.stats()).toMatchObject({ containers: 1, evictions: 1 });
  });

  it('knows host cgroups', () => {
    const t = new MetadataTable(1n);
    expect(t.isHost('n1', 1n)).toBe(true);
    t.upsert(meta({ cgroupId: 77n, containerId: '' }));
    expect(t.isHost('n1', 77n)).toBe(true);
    expect(t.isHost('n1', 78n)).toBe(false);
    expect(isContainerCgroupPath('/system.slice/ssh.service')).toBe(false);
    expect(isContainerCgroupPath('/docker/' + 'a'.repeat(64))).toBe(true);
    expect(isContainerCgroupPath('/kubepods.slice/kubepods-burstable.slice/x')).toBe(true);
    expect(isContainerCgroupPath('/kubepods/burstable/pod0f5c0a4e-2c41-4b4a-9a6e-1234567890ab')).toBe(true);
    expect(isContainerCgroupPath(`/system.slice/nerdctl-${'b'.repeat(64)}.scope`)).toBe(true);
    expect(isContainerCgroupPath('/user.slice/user-1000.slice/session-2.scope')).toBe(false);
  });

  it('a runtime record un-hosts a cgroup whose path the parser did not know (ctr run IMAGE cache)', () => {
    const t = new MetadataTable(1n);
    expect(isContainerCgroupPath('/default/cache')).toBe(false);
    t.markHost('n1', 90n); // its cgroup_mkdir came first
    expect(t.isHost('n1', 90n)).toBe(true);
    expect(t.hasRecord('n1', 90n)).toBe(false);
    t.upsert(meta({ cgroupId: 90n, containerId: 'cache' }));
    expect(t.isHost('n1', 90n)).toBe(false);
    expect(t.hasRecord('n1', 90n)).toBe(true);
  });

  it('agrees with the cgroup path corpus: every container there is not the host', () => {
    const corpus = JSON.parse(
      readFileSync(new URL('../fixtures/cgroup-paths/corpus.json', import.meta.url), 'utf8'),
    ) as { cases: { path: string; expect: unknown }[] };
    for (const c of corpus.cases)
      if (c.expect !== null) expect(isContainerCgroupPath(c.path), c.path).toBe(true);
  });
});

describe('partition batch', () => {
  const limits = {
    maxRows: 3,
    maxMs: 1_000,
    smallRows: 0,
    smallMaxMs: 1_000,
    trickleRows: 0,
    trickleMaxMs: 1_000,
    lateWaitMs: 500,
    lateMaxRows: 2,
  };

  it('cuts on rows or age, but waits for late metadata within its deadline', () => {
    const b = new PartitionBatch(limits);
    b.addMessage(10n, 0);
    const r1 = addTestEvent(b, 't', 'cpu_sample', {}, { timeNs: 0n });
    b.addWaiting(r1, 'n1', 42n, 100n, 0);
    b.addRow('u', { n: 2 });
    b.addRow('u', { n: 3 });
    expect(b.shouldCut(100, undefined)).toBe(false); // full, but r1 may still join
    const m = meta();
    const pathOnly = meta({ name: '', image: '' });
    expect(b.resolve('n1', 42n, () => undefined, pathOnly)).toBe(0); // known by its path only: waits on
    expect(r1.meta).toBe(pathOnly); // as a row after the record would be: its exits wait for a name
    expect(r1.columns).toMatchObject({ join_state: 'pending', container_id: 'c42' });
    expect(b.shouldCut(100, undefined)).toBe(false);
    expect(b.resolve('n1', 42n, () => m, m)).toBe(1);
    expect(r1.columns.container_id).toBe('c42');
    expect(r1.columns.join_state).toBe('joined');
    expect(eventTables(b.cut()).get('t')?.views().map(flatRow)).toEqual([flatRow(r1)]);
    expect(b.shouldCut(100, undefined)).toBe(true);
  });

  it('a row known by its cgroup path only keeps that container id while pending', () => {
    const b = new PartitionBatch(limits);
    b.addMessage(10n, 0);
    const r = addTestEvent(b, 't', 'cpu_sample', {}, { timeNs: 0n });
    const pathOnly = meta({ name: '', image: '' });
    markPending(r, pathOnly);
    b.addWaiting(r, 'n1', 42n, 100n, 0);
    expect(r.columns).toMatchObject({ join_state: 'pending', container_id: 'c42' });
    expect(r.meta).toBe(pathOnly); // the crash-loop rule waits for its name
    const named = meta();
    expect(b.resolve('n1', 42n, () => named, named)).toBe(1);
    expect(r.columns).toMatchObject({ join_state: 'joined', container_name: 'web', image: 'img:1' });
    expect(r.meta).toBe(named);
  });

  it('gives up waiting at the deadline and writes pending rows', () => {
    const b = new PartitionBatch(limits);
    b.addMessage(10n, 0);
    const r = addTestEvent(b, 't', 'cpu_sample', {}, { timeNs: 0n });
    b.addWaiting(r, 'n1', 42n, 100n, 900); // arrived late in the batch: deadline 1400
    expect(b.shouldCut(999, undefined)).toBe(false); // not due yet
    expect(b.shouldCut(1_000, undefined)).toBe(false); // due, but the row still waits
    expect(b.shouldCut(1_400, undefined)).toBe(true);
    const cut = b.cut();
    expect(cut.latePending).toBe(1);
    expect(r.columns.join_state).toBe('pending');
  });

  it('cuts a small batch at smallMaxMs, a batch of smallRows or more at maxMs', () => {
    const trickle = { ...limits, maxRows: 100, smallRows: 3, smallMaxMs: 4_000 };
    const small = new PartitionBatch(trickle);
    small.addMessage(1n, 0);
    small.addRow('t', {});
    small.addRow('t', {});
    expect(small.shouldCut(1_000, undefined)).toBe(false); // 2 rows < 3: not at maxMs
    expect(small.shouldCut(3_999, undefined)).toBe(false);
    expect(small.shouldCut(4_000, undefined)).toBe(true);
    small.addRow('t', {}); // a third row: now it is due at maxMs like any batch
    expect(small.shouldCut(1_000, undefined)).toBe(true);
    expect(small.shouldCut(999, undefined)).toBe(false);

    const full = new PartitionBatch({ ...trickle, maxRows: 2 });
    full.addMessage(1n, 0);
    full.addRow('t', {});
    full.addRow('t', {});
    expect(full.shouldCut(0, undefined)).toBe(true); // full: at once, whatever its age
  });

  /** Both small-batch tiers on: under 10 rows wait for 2 s, under 3 for 6 s. */
  const tiers = {
    ...limits,
    maxRows: 100,
    smallRows: 10,
    smallMaxMs: 2_000,
    trickleRows: 3,
    trickleMaxMs: 6_000,
  };

  it('cuts a batch still under trickleRows at trickleMaxMs, one of trickleRows at smallMaxMs', () => {
    const b = new PartitionBatch(tiers);
    b.addMessage(1n, 0);
    b.addRow('t', {});
    b.addRow('t', {});
    expect(b.shouldCut(2_000, undefined)).toBe(false); // 2 rows < 3: not at smallMaxMs
    expect(b.shouldCut(5_999, undefined)).toBe(false);
    expect(b.shouldCut(6_000, undefined)).toBe(true);
    b.addRow('t', {}); // trickleRows reached: due at smallMaxMs, not before
    expect(b.shouldCut(1_999, undefined)).toBe(false);
    expect(b.shouldCut(2_000, undefined)).toBe(true);
  });

  it('cuts alongside another partition once past maxMs, whatever the small-batch tiers', () => {
    const b = new PartitionBatch(tiers);
    expect(b.shouldCut(10_000, undefined, true)).toBe(false); // empty: nothing to cut
    b.addMessage(1n, 0);
    b.addRow('t', {});
    expect(b.shouldCut(999, undefined, true)).toBe(false); // maxMs (1,000) still holds
    expect(b.shouldCut(1_000, undefined, true)).toBe(true);
    expect(b.shouldCut(1_000, undefined)).toBe(false); // on its own it waits for the trickle tier
    b.addWaiting(eventRow('cpu_sample'), 'n1', 9n, 1n, 1_000); // a row waiting for metadata holds it back
    expect(b.shouldCut(1_000, undefined, true)).toBe(false);
    expect(b.shouldCut(1_000, 5n, true)).toBe(false); // a recorded cut decides alone
  });

  it('says when it falls due: the tier its rows are in, or the late wait holding it', () => {
    const b = new PartitionBatch(tiers);
    expect(b.dueAtMs()).toBeUndefined(); // empty: never
    b.addMessage(1n, 500);
    const dueAt = () => {
      const at = b.dueAtMs() as number;
      expect(b.shouldCut(at - 1, undefined)).toBe(false);
      expect(b.shouldCut(at, undefined)).toBe(true);
      return at;
    };
    b.addRow('t', {});
    expect(dueAt()).toBe(6_500); // under trickleRows: trickleMaxMs
    b.addRow('t', {});
    b.addRow('t', {});
    expect(dueAt()).toBe(2_500); // trickleRows: smallMaxMs
    for (let i = 0; i < 7; i++) b.addRow('t', {});
    expect(dueAt()).toBe(1_500); // smallRows: maxMs
    b.addWaiting(eventRow('cpu_sample'), 'n1', 9n, 1n, 1_200); // waits until 1,700
    expect(dueAt()).toBe(1_700);
    for (let i = 0; i < 90; i++) b.addRow('t', {});
    expect(b.dueAtMs()).toBe(1_700); // full, but the waiting row's deadline still holds it
    for (let i = 0; i < 100; i++) b.addRow('t', {});
    expect(b.dueAtMs()).toBe(500); // twice maxRows: at once, whatever its age
    expect(b.shouldCut(500, undefined)).toBe(true);
  });

  it('bounds the late buffer and counts the overflow', () => {
    const b = new PartitionBatch(limits);
    b.addMessage(1n, 0);
    const accepted = [1, 2, 3].map(() => b.addWaiting(eventRow('cpu_sample'), 'n1', 9n, 1n, 0));
    expect(accepted).toEqual([true, true, false]);
    expect(b.lateOverflow).toBe(1);
  });

  it('honours a recorded cut exactly, whatever the size or age', () => {
    const b = new PartitionBatch(limits);
    for (let o = 5n; o <= 7n; o++) {
      b.addMessage(o, 0);
      for (let i = 0; i < 5; i++) b.addRow('t', {});
      expect(b.shouldCut(10_000, 7n)).toBe(o === 7n);
    }
    expect(b.cut()).toMatchObject({ firstOffset: 5n, lastOffset: 7n, rows: 15 });
  });

  it('names the offset range in tokens and cut metadata', () => {
    expect(dedupToken('proc_exec', 'ev', 3, 10n, 20n)).toBe('proc_exec:ev:3:10-20');
    expect(decodeCut(encodeCut(123456789012345n))).toBe(123456789012345n);
    expect(decodeCut('')).toBeUndefined();
    expect(decodeCut(null)).toBeUndefined();
  });

  it('takes from the committed position the recorded cut and how far rows may be written', () => {
    // A clean position: nothing at or past it is written; nothing to check.
    expect(assignmentStart({ offset: '12', metadata: null })).toEqual({
      forcedCut: undefined,
      checkThrough: 11n,
    });
    // A recorded cut: its rows may be there, up to its end.
    expect(assignmentStart({ offset: '10', metadata: encodeCut(15n) })).toEqual({
      forcedCut: 15n,
      checkThrough: 15n,
    });
    // Nothing committed yet (kafkajs reads -1).
    expect(assignmentStart({ offset: '-1', metadata: null }).checkThrough).toBe(-2n);
    expect(assignmentStart(undefined)).toEqual({ forcedCut: undefined, checkThrough: -2n });
  });
});

describe('rows', () => {
  it('writes DateTime64(9) text exactly, for any u64 ns', () => {
    expect(dateTime64(1_700_000_000_000_000_001n)).toBe('1700000000.000000001');
    expect(dateTime64(18_446_744_073_709_551_615n)).toBe('18446744073.709551615');
    expect(dateTime64(5n)).toBe('0.000000005');
  });
});

describe('alert rules', () => {
  const rules = {
    oomKill: true,
    crashLoopExits: 3,
    crashLoopWindowMs: 1_000,
    tcpSpikeThreshold: 10,
    tcpSpikeWindowMs: 1_000,
    sequenceGap: true,
  };
  const ms = 1_000_000n;

  it('raises a crash loop on N non-zero exits within the window only', () => {
    const e = new AlertEngine(rules);
    const out: Parameters<AlertEngine['observe']>[2] = [];
    const exit = (t: bigint, code: number) =>
      eventRow('proc_exit', { exitCode: code, signal: 0, tsNs: t }, t, 'c1');
    e.observe('proc_exit', exit(0n, 1), out);
    e.observe('proc_exit', exit(100n * ms, 0), out); // clean exit does not count
    e.observe('proc_exit', exit(2_000n * ms, 1), out); // first one fell out of the window
    e.observe('proc_exit', exit(2_100n * ms, 1), out);
    expect(out).toHaveLength(0);
    e.observe('proc_exit', exit(2_200n * ms, 137), out);
    expect(out.map((a) => a.kind)).toEqual(['crash_loop']);
    expect(out[0]?.details.exits).toBe('3');
  });

  it('raises oom kills, tcp spikes once per window, and sequence gaps', () => {
    const e = new AlertEngine(rules);
    const out: Parameters<AlertEngine['observe']>[2] = [];
    e.observe('oom_kill', eventRow('oom_kill', { comm: 'x' }, 5n, 'c1'), out);
    for (let i = 0; i < 12; i++) e.observe('tcp_reset', eventRow('tcp_reset', {}, BigInt(i) * ms, 'c1'), out);
    const seen = (bootId: string, sequence: bigint) =>
      e.observeSequence(
        { node: 'n1', bootId, sequence, producedAtNs: 0n, checksum: 0, offset: sequence },
        out,
      );
    seen('b', 1n);
    seen('b', 2n);
    seen('b', 5n);
    seen('b2', 1n); // new boot: sequence restarts, no gap
    expect(out.map((a) => a.kind)).toEqual(['oom_kill', 'tcp_spike', 'data_loss']);
    expect(out[2]?.details.missing).toBe('2');
  });
});

describe('rows from decoded Avro', () => {
  it('carry only the event own fields (avsc records inherit enumerable methods)', async () => {
    const { createProcessorCodec } = await import('../../processor/src/codec.js');
    const { SyntheticNode } = await import('../../bench/processor/synthetic.js');
    const { wallClockNs } = await import('../../processor/src/rows.js');
    const codec = createProcessorCodec();
    const batch = codec.decodeEventBatch(new SyntheticNode({ node: 'n1', containers: 2 }).next(2), true);
    const ev = batch.events[0];
    if (ev === undefined) throw new Error('no event');
    const [built] = buildMessageRows(batch, 3, '7', true).rows;
    const row = flatRow(built?.columns ?? {});
    expect(Object.keys(row)).toEqual([
      'node',
      'boot_id',
      'time',
      ...IDENTITY_COLUMNS,
      'join_state',
      'kafka_partition',
      'kafka_offset',
      'ts_ns',
      'cgroup_id',
      'pid',
      'tgid',
      'flags',
      'cpu_ns',
      'switches',
      'interval_ns',
    ]);
    expect(row.cgroup_id).toBe(10001); // u64 as a number while a double holds it exactly
    expect(row.join_state).toBe('pending');
    expect([row.node, row.boot_id, row.kafka_partition, row.kafka_offset]).toEqual([
      'n1',
      batch.bootId,
      3,
      '7',
    ]);
    expect(built?.timeNs).toBe(wallClockNs(batch, ev.tsNs));
    // Kept for the enriched topic: the event's bytes as they arrived (current writer schema),
    // copied, so a pending row does not keep the record batch its message was a view into...
    expect(built?.bytes?.body.equals(batch.eventBytes?.body as Buffer)).toBe(true);
    expect(built?.bytes?.spans).toHaveLength(2 * batch.events.length);
    expect(built?.event).toBeUndefined();
    // ...or, from a writer on another schema version (no bytes), the decoded event.
    const { eventBytes: _, ...olderBatch } = batch;
    const [older] = buildMessageRows(olderBatch, 3, '7', true).rows;
    expect(older?.event).toBe(ev);
    expect(older?.bytes).toBeUndefined();
    // Neither while the enriched topic is off.
    const [off] = buildMessageRows(batch, 3, '7', false).rows;
    expect([off?.bytes, off?.event]).toEqual([undefined, undefined]);
    // The copy shares no memory with the message: overwriting the message leaves it as it was.
    const kept = Buffer.from(built?.bytes?.body as Buffer);
    batch.eventBytes?.body.fill(0);
    expect(built?.bytes?.body.equals(kept)).toBe(true);
    expect(kept.some((b) => b !== 0)).toBe(true);
  });
});
