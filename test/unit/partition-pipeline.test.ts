// Unit tests of the exactly-once core (processor/src/partition-pipeline.ts) with fakes of
// its small interfaces: a row store, an offset committer and the side outputs. The real
// broker and engine are exercised in test/integration/processor-*.test.ts.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PoisonError, TransientError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import { AlertStateKeeper } from '../../processor/src/alert-state.js';
import { asRows, type TableRows } from '../../processor/src/event-columns.js';
import { MetadataTable } from '../../processor/src/metadata-table.js';
import type { Row } from '../../processor/src/partition-batch.js';
import { PartitionPipeline, type PipelineDeps } from '../../processor/src/partition-pipeline.js';
import { PendingBudget } from '../../processor/src/pending-budget.js';
import {
  type BatchControl,
  emptyStats,
  type InMessage,
  type ProcessorCodec,
  type RowSink,
} from '../../processor/src/processor-types.js';
import type { DecodedEventBatch } from '../../processor/src/rows.js';
import type { OutputResult, OutputSend } from '../../processor/src/side-outputs.js';
import { consumeContainers } from '../../processor/src/topic-consumers.js';

const TOPICS = { events: 'ev', containers: 'ct', deadletter: 'dl', enriched: 'en', alerts: 'al' };
const nowNs = () => BigInt(Date.now()) * 1_000_000n;

/** A message the fake codec decodes to `events` events of node n1; 'bad' is undecodable. */
const message = (offset: number, events = 2): InMessage => ({
  offset: String(offset),
  key: null,
  value: Buffer.from(events < 0 ? 'bad' : String(events)),
});

/** Every decoded message is a new one of its node (a copy is a test of its own). */
let nextSequence = 0n;

const codec: ProcessorCodec = {
  decodeEventBatch(value: Buffer): DecodedEventBatch {
    const text = value.toString();
    if (text === 'bad') throw new PoisonError('not an EventBatch');
    const n = Number(text);
    const at = nowNs();
    return {
      node: 'n1',
      bootId: 'b1',
      collectorVersion: 't',
      sequence: nextSequence++,
      producedAtNs: at,
      bootEpochNs: null,
      events: Array.from({ length: n }, (_, i) => ({
        kind: 'exec',
        tsNs: at,
        cgroupId: 7n,
        pid: i,
        tgid: i,
      })),
    };
  },
  decodeContainerRecord: () => ({}),
  decodeCollectorStats: () => ({}),
  encodeDeadLetter: () => Buffer.from('dl'),
  encodeEnriched: () => Buffer.from('en'),
  encodeAlert: () => Buffer.from('al'),
};

/** A row store that keeps rows by table and offset; inserts can fail, reject or wait. */
class FakeStore implements RowSink {
  readonly inserts: { table: string; rows: readonly Row[]; token: string; shareable: boolean }[] = [];
  readonly have = new Map<string, Set<string>>();
  failures = 0;
  /** Rows from these offsets are rejected as bad data (in any insert that holds them). */
  poison = new Set<string>();
  /** When set, inserts wait for it. */
  gate: Promise<void> | undefined;
  onInsert: ((table: string) => void) | undefined;
  constructor(private readonly trace: string[]) {}

  async insert(table: string, inserted: TableRows, token: string, shareable = false): Promise<void> {
    const rows = asRows(inserted);
    this.onInsert?.(table);
    if (this.gate !== undefined) await this.gate;
    if (this.failures > 0) {
      this.failures--;
      throw new Error('connection reset');
    }
    if (rows.some((r) => this.poison.has(String(r.kafka_offset)))) throw new PoisonError('bad row');
    this.trace.push(`insert ${table}`);
    this.inserts.push({ table, rows, token, shareable });
    const set = this.have.get(table) ?? new Set<string>();
    for (const r of rows) set.add(String(r.kafka_offset));
    this.have.set(table, set);
  }

  async writtenOffsets(table: string, _topic: string, _p: number, first: bigint, last: bigint) {
    const out = new Set<string>();
    for (const o of this.have.get(table) ?? []) if (BigInt(o) >= first && BigInt(o) <= last) out.add(o);
    return out;
  }
}

function setup(options: { maxRows?: number; maxMs?: number; lateWaitMs?: number } = {}) {
  const trace: string[] = [];
  const store = new FakeStore(trace);
  const commits: { offset: bigint; metadata: string | null }[] = [];
  const committer = {
    fail: false,
    /** Commits that fail as an unreachable coordinator does before one lands. */
    unreachable: 0,
    onHeartbeat: undefined as (() => void) | undefined,
    async commit(_p: number, offset: bigint, metadata: string | null) {
      if (committer.fail) throw new Error('REBALANCE_IN_PROGRESS');
      if (committer.unreachable > 0) {
        committer.unreachable--;
        trace.push('commit failed');
        throw new TransientError('offset commit: group coordinator unreachable');
      }
      trace.push(`commit ${offset}${metadata === null ? '' : ` ${metadata}`}`);
      commits.push({ offset, metadata });
    },
    async heartbeat() {
      committer.onHeartbeat?.();
    },
  };
  const sends: OutputSend[] = [];
  const outputs = {
    async publish(send: OutputSend): Promise<OutputResult> {
      sends.push(send);
      return { output: send.output, skipped: false, reason: '', wentDown: false };
    },
  };
  const log = createLogger('partition-pipeline-test');
  const stats = emptyStats();
  const committed: { first: bigint; last: bigint; rows: number }[] = [];
  const dropped: { first: bigint; last: bigint }[] = [];
  const alongside: number[] = [];
  const stored: string[] = [];
  const deps: PipelineDeps = {
    store,
    committer,
    outputs,
    codec,
    topics: TOPICS,
    limits: {
      maxRows: options.maxRows ?? 6,
      maxMs: options.maxMs ?? 60_000,
      smallRows: 0,
      smallMaxMs: 60_000,
      trickleRows: 0,
      trickleMaxMs: 60_000,
      lateWaitMs: options.lateWaitMs ?? 0,
      lateMaxRows: 100,
    },
    groupId: 'g',
    enrichedTopic: false,
    rawTtlDays: undefined,
    alertRules: {
      oomKill: false,
      crashLoopExits: 0,
      crashLoopWindowMs: 0,
      tcpSpikeThreshold: 0,
      tcpSpikeWindowMs: 0,
      sequenceGap: false,
    },
    retryInitialMs: 1,
    retryMaxMs: 2,
    pending: new PendingBudget(1_000_000, { pause: () => {}, resume: () => {} }),
    alertStates: new AlertStateKeeper({
      store: undefined,
      group: 'g',
      topic: TOPICS.events,
      log,
      countFailure: () => {},
      restoreTimeoutMs: 1_000,
      retryInitialMs: 1,
      retryMaxMs: 2,
    }),
    stats,
    hooks: {
      onCommitted: (i) => committed.push(i),
      onBatchDropped: (i) => dropped.push(i),
      onStored: (i) => stored.push(`${i.first}-${i.last} before commit ${commits.at(-1)?.offset}`),
    },
    log,
    memberId: () => 'm',
    noteDeadLetter: () => stats.deadLetters++,
    countLoss: () => {},
    cutAlongside: (p) => alongside.push(p),
  };
  const pipeline = new PartitionPipeline(0, 1, new MetadataTable(3_600_000_000_000n), deps);
  pipeline.markRestored();
  const resolved: string[] = [];
  const ctl: BatchControl = {
    active: () => true,
    resolveOffset: (o) => resolved.push(o),
    heartbeat: async () => {},
  };
  /** Flushes and waits for the write (what stop does). */
  const settle = () =>
    pipeline.withLock(async () => {
      await pipeline.flush();
      await pipeline.drain();
    });
  return {
    pipeline,
    store,
    committer,
    commits,
    trace,
    sends,
    stats,
    committed,
    dropped,
    resolved,
    ctl,
    settle,
    alongside,
    stored,
    log,
  };
}

describe('partition pipeline: exactly-once core', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('cuts at the row bound, records the cut, writes every table, then commits its end', async () => {
    const t = setup({ maxRows: 6 });
    // Each message is 3 rows (2 events + its event_batches row): the 2nd message reaches 6.
    await t.pipeline.consume([message(10), message(11), message(12)], t.ctl);
    await t.pipeline.withLock(() => t.pipeline.drain());
    expect(t.resolved).toEqual(['10', '11', '12']);
    expect(t.trace).toEqual(['commit 10 ktrail-cut:11', 'insert event_batches', 'insert exec', 'commit 12']);
    expect(t.store.inserts.map((i) => i.token)).toEqual(['event_batches:ev:0:10-11', 'exec:ev:0:10-11']);
    expect(t.committed).toEqual([expect.objectContaining({ first: 10n, last: 11n, rows: 6 })]);
    expect(t.pipeline.state()).toBe('open');
    // The message after the cut is the next batch.
    await t.settle();
    expect(t.commits.at(-1)).toEqual({ offset: 13n, metadata: null });
    expect(t.stats.rowsWritten).toBe(9);
  });

  it('asks the other partitions to cut along on its own cut only; its inserts may share statements', async () => {
    const t = setup({ maxRows: 6 });
    await t.pipeline.consume([message(10), message(11)], t.ctl);
    await t.pipeline.withLock(() => t.pipeline.drain());
    expect(t.alongside).toEqual([0]);
    expect(t.store.inserts.every((i) => i.shareable)).toBe(true);
    await t.pipeline.consume([message(12)], t.ctl);
    await t.pipeline.withLock(async () => {
      await t.pipeline.flush(true); // cut alongside another partition: asks nobody
      await t.pipeline.drain();
    });
    expect(t.alongside).toEqual([0]);
    expect(t.commits.at(-1)?.offset).toBe(13n);
    // Queryable (every table inserted) before the watermark moves past the cut.
    expect(t.stored).toEqual(['10-11 before commit 10', '12-12 before commit 12']);
  });

  it('cuts a batch when it falls due, with no tick to prompt it', async () => {
    vi.useFakeTimers();
    const t = setup({ maxRows: 100, maxMs: 300 });
    await t.pipeline.consume([message(10)], t.ctl);
    await vi.advanceTimersByTimeAsync(200);
    await t.pipeline.consume([message(11)], t.ctl); // the batch's age counts from its first message
    await vi.advanceTimersByTimeAsync(99);
    expect(t.commits).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await t.pipeline.withLock(() => t.pipeline.drain());
    expect(t.committed).toEqual([expect.objectContaining({ first: 10n, last: 11n })]);
    // The next batch gets a timer of its own; a revoked partition's timer cuts nothing.
    await t.pipeline.consume([message(12)], t.ctl);
    t.pipeline.revoke();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(t.committed).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('cuts a batch held by rows waiting for metadata once their record arrives', async () => {
    vi.useFakeTimers();
    const t = setup({ maxRows: 100, maxMs: 300, lateWaitMs: 10_000 });
    await t.pipeline.consume([message(10)], t.ctl); // cgroup 7 is not described yet
    await vi.advanceTimersByTimeAsync(1_000);
    expect(t.committed).toEqual([]); // due at 300 ms, but its rows may still join
    const record = {
      node: 'n1',
      cgroupId: 7n,
      containerId: 'c7',
      name: 'web',
      image: 'img:1',
      state: 'RUNNING',
    };
    await consumeContainers(
      {
        store: t.store,
        codec: { ...codec, decodeContainerRecord: () => record },
        stats: t.stats,
        log: t.log,
        metadata: () => t.pipeline.metadata,
        pipeline: () => t.pipeline,
        readUpTo: () => {},
        skipped: () => {},
      },
      {
        topic: TOPICS.containers,
        partition: 0,
        messages: [{ offset: '0', key: null, value: Buffer.from('r') }],
        firstOffset: () => '0',
        lastOffset: () => '0',
      },
      t.ctl,
    );
    await vi.advanceTimersByTimeAsync(0);
    await t.pipeline.withLock(() => t.pipeline.drain());
    expect(t.committed).toEqual([expect.objectContaining({ first: 10n, last: 10n })]);
    const exec = t.store.inserts.find((i) => i.table === 'exec');
    expect(exec?.rows.map((r) => r.container_name)).toEqual(['web', 'web']);
  });

  it('retries a failed insert and writes only the rows not yet there', async () => {
    const t = setup();
    t.store.failures = 2;
    await t.pipeline.consume([message(0)], t.ctl);
    await t.settle();
    expect(t.stats.insertRetries).toBe(2);
    const exec = t.store.inserts.filter((i) => i.table === 'exec');
    expect(exec).toHaveLength(1);
    expect(exec[0]?.rows).toHaveLength(2);
    expect(t.commits.map((c) => c.offset)).toEqual([0n, 1n]);
  });

  it('a new owner handed messages below the position it read writes them once', async () => {
    // An earlier owner wrote 10-11 and committed 12; kafkajs read the committed offset
    // before that commit landed and hands this owner 10 on. Without the check they repeat.
    for (const check of [true, false]) {
      const t = setup({ maxRows: 100 });
      for (const table of ['event_batches', 'exec']) t.store.have.set(table, new Set(['10', '11']));
      if (check) t.pipeline.checkThrough = 11n;
      await t.pipeline.consume([message(10), message(11), message(12)], t.ctl);
      await t.settle();
      const exec = t.store.inserts.filter((i) => i.table === 'exec').flatMap((i) => i.rows);
      expect(exec.map((r) => r.kafka_offset)).toEqual(
        check ? ['12', '12'] : ['10', '10', '11', '11', '12', '12'],
      );
      expect(t.commits.at(-1)?.offset).toBe(13n);
    }
  });

  it('splits a batch the store rejects: the bad message becomes a dead letter, the rest lands once', async () => {
    const t = setup({ maxRows: 100 });
    t.store.poison.add('1');
    await t.pipeline.consume([message(0), message(1), message(2)], t.ctl);
    await t.settle();
    const exec = t.store.inserts
      .filter((i) => i.table === 'exec')
      .flatMap((i) => i.rows.map((r) => r.kafka_offset));
    expect(exec.sort()).toEqual(['0', '0', '2', '2']);
    expect(t.store.inserts.filter((i) => i.table === 'dead_letters')).toHaveLength(1);
    expect(t.stats.deadLetters).toBeGreaterThan(0);
    expect(t.commits.at(-1)?.offset).toBe(3n);
  });

  it('drops a batch revoked in the middle of its write: no insert after, no commit', async () => {
    const t = setup();
    let release = () => {};
    t.store.gate = new Promise<void>((r) => {
      release = r;
    });
    await t.pipeline.consume([message(5)], t.ctl);
    const writing = t.pipeline.withLock(() => t.pipeline.flush());
    await writing;
    expect(t.pipeline.state()).toBe('writing');
    t.pipeline.revoke();
    release();
    await t.pipeline.drain();
    expect(t.pipeline.state()).toBe('revoked');
    expect(t.commits.map((c) => c.offset)).toEqual([5n]); // the cut record only
    expect(t.dropped).toEqual([{ memberId: 'm', partition: 0, first: 5n, last: 5n }]);
    expect(t.committed).toEqual([]);
    // A revoked pipeline takes no more messages.
    await t.pipeline.consume([message(6)], t.ctl);
    expect(t.resolved).toEqual(['5']);
  });

  it('never commits after a revocation that comes once every insert is done', async () => {
    const t = setup();
    let inserts = 0;
    t.store.onInsert = () => inserts++;
    // The heartbeat after the last table's insert is where the partition is lost.
    t.committer.onHeartbeat = () => {
      if (inserts === 2) t.pipeline.revoke();
    };
    await t.pipeline.consume([message(3)], t.ctl);
    await t.pipeline.withLock(() => t.pipeline.flush());
    await t.pipeline.drain();
    expect(t.trace).toEqual(['commit 3 ktrail-cut:3', 'insert event_batches', 'insert exec']);
    expect(t.dropped).toHaveLength(1);
    expect(t.stats.batchesCommitted).toBe(0);
  });

  it('a refused commit revokes the partition and drops the batch uncommitted', async () => {
    const t = setup();
    t.committer.fail = true;
    await t.pipeline.consume([message(0)], t.ctl);
    await t.pipeline.withLock(() => t.pipeline.flush());
    await t.pipeline.drain();
    expect(t.store.inserts).toEqual([]); // the cut could not be recorded: nothing written
    expect(t.pipeline.state()).toBe('revoked');
    expect(t.dropped).toHaveLength(1);
    expect(t.stats.batchesDropped).toBe(1);
  });

  it('a coordinator that cannot be reached is waited for: the partition stays owned and commits', async () => {
    const t = setup();
    t.committer.unreachable = 3;
    await t.pipeline.consume([message(0)], t.ctl);
    await t.settle();
    expect(t.trace.slice(0, 4)).toEqual([
      'commit failed',
      'commit failed',
      'commit failed',
      'commit 0 ktrail-cut:0',
    ]);
    expect(t.trace.at(-1)).toBe('commit 1');
    expect(t.pipeline.state()).toBe('open');
    expect(t.dropped).toEqual([]);
    expect(t.stats.insertRetries).toBe(3);
  });

  it('a failed write is rethrown before the next cut, and nothing past it is committed', async () => {
    const t = setup();
    const encode = codec.encodeDeadLetter;
    codec.encodeDeadLetter = () => {
      throw new Error('encoder broken');
    };
    try {
      await t.pipeline.consume([message(0, -1)], t.ctl); // undecodable: a dead letter to publish
      await t.pipeline.withLock(() => t.pipeline.flush());
      await t.pipeline.withLock(() => t.pipeline.drain()).catch(() => {});
      expect(t.commits.map((c) => c.offset)).toEqual([0n]);
      expect(t.pipeline.state()).toBe('open'); // drain took the error
    } finally {
      codec.encodeDeadLetter = encode;
    }
    // Fails again the same way next time: the write's error reaches consume.
    codec.encodeDeadLetter = () => {
      throw new Error('encoder broken');
    };
    try {
      await t.pipeline.consume([message(1, -1)], t.ctl);
      await t.pipeline.withLock(() => t.pipeline.flush());
      await new Promise((r) => setTimeout(r, 10));
      expect(t.pipeline.state()).toBe('failed');
      await expect(t.pipeline.consume([message(2)], t.ctl)).rejects.toThrow('encoder broken');
    } finally {
      codec.encodeDeadLetter = encode;
    }
    expect(t.commits.some((c) => c.metadata === null)).toBe(false);
  });

  it('takes no messages while restoring', async () => {
    const t = setup();
    const p = new PartitionPipeline(
      1,
      1,
      new MetadataTable(1n),
      (t.pipeline as unknown as { d: PipelineDeps }).d,
    );
    expect(p.state()).toBe('restoring');
    await p.consume([message(0)], t.ctl);
    expect(t.resolved).toEqual([]);
    expect(p.markRestored()).toBe(true);
    await p.consume([message(0)], t.ctl);
    expect(t.resolved).toEqual(['0']);
  });
});
