// The events partitions this member owns in the current generation, one pipeline each, and
// their restore: on an assignment, events wait until the partition's containers were read
// to their end (Kafka Streams' restore phase), so the first batches join against complete
// metadata. Metadata tables survive a rebalance for the partitions this member keeps.
import type { Logger } from '../../common/log.js';
import type { AlertStateKeeper } from './alert-state.js';
import type { GroupRuntime } from './group-runtime.js';
import { MetadataTable } from './metadata-table.js';
import { assignmentStart } from './partition-batch.js';
import { PartitionPipeline, type PipelineDeps } from './partition-pipeline.js';
import type { PendingBudget } from './pending-budget.js';
import type { ProcessorHooks, ProcessorStats, ProcessorTopics } from './processor-types.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const OFFSETS_READ_DEADLINE_MS = 15_000;

/** The promise's value, or a rejection once `ms` passed (the promise itself runs on). */
function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  promise.catch(() => {}); // a late failure after the deadline is not unhandled
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

export interface PartitionSetDeps {
  runtime: Pick<GroupRuntime, 'pause' | 'resume' | 'assignmentOffsets'>;
  topics: ProcessorTopics;
  pending: PendingBudget;
  alertStates: AlertStateKeeper;
  pipelineDeps: PipelineDeps;
  hooks: ProcessorHooks;
  log: Logger;
  retentionNs: bigint;
  retryInitialMs: number;
  retryMaxMs: number;
  restoreTimeoutMs: number;
}

export class PartitionSet {
  private readonly pipelines = new Map<number, PartitionPipeline>();
  private readonly tables = new Map<number, MetadataTable>();
  private readonly restoreTargets = new Map<number, { pipeline: PartitionPipeline; high: bigint }>();
  /** Next offset to read per containers partition in this generation (restore progress). */
  private readonly containersRead = new Map<number, bigint>();
  private generation = 0;
  private lastEviction = 0;
  memberId = '';

  constructor(private readonly d: PartitionSetDeps) {}

  /** Owned by this member in the current generation. */
  current(pl: PartitionPipeline): boolean {
    return pl.owned() && pl.generation === this.generation && this.pipelines.get(pl.partition) === pl;
  }

  /** The partition's pipeline while it is current. */
  owning(p: number): PartitionPipeline | undefined {
    const pl = this.pipelines.get(p);
    return pl !== undefined && this.current(pl) ? pl : undefined;
  }

  get(p: number): PartitionPipeline | undefined {
    return this.pipelines.get(p);
  }

  all(): PartitionPipeline[] {
    return [...this.pipelines.values()];
  }

  metadata(p: number): MetadataTable | undefined {
    return this.tables.get(p);
  }

  metadataTables(): Iterable<MetadataTable> {
    return this.tables.values();
  }

  /** The containers partition was read up to (excluding) `next`: its events may start. */
  containersReadUpTo(p: number, next: bigint): void {
    this.containersRead.set(p, next);
    const target = this.restoreTargets.get(p);
    if (target !== undefined && next >= target.high) this.markRestored(target.pipeline);
  }

  /** Every interval: cuts what is due; once a minute, evicts containers stopped long ago. */
  tick(stats: ProcessorStats): void {
    for (const pl of this.pipelines.values()) if (this.current(pl)) pl.cutIfDue();
    const now = Date.now();
    if (now - this.lastEviction < 60_000) return;
    this.lastEviction = now;
    const nowNs = BigInt(now) * 1_000_000n;
    for (const t of this.tables.values()) stats.metadataEvictions += t.evictStopped(nowNs);
  }

  /** The other partitions' batches past maxMs are cut with `partition`'s (PipelineDeps.cutAlongside). */
  cutAlongside(partition: number): void {
    for (const pl of this.pipelines.values())
      if (pl.partition !== partition && this.current(pl)) pl.cutIfDue(true);
  }

  revokeAll(reason: string): void {
    this.generation++;
    for (const pl of this.pipelines.values()) {
      pl.revoke();
      this.d.pending.release(pl.batch);
      if (!pl.batch.isEmpty()) pl.dropped(pl.batch.firstOffset as bigint, pl.batch.lastOffset as bigint);
    }
    this.containersRead.clear();
    this.restoreTargets.clear();
    this.d.pending.forgetPaused();
    if (this.pipelines.size > 0)
      this.d.log.info(
        { reason, generation: this.generation },
        'partitions revoked; pending batches dropped uncommitted',
      );
    this.pipelines.clear();
  }

  private markRestored(pl: PartitionPipeline): void {
    this.restoreTargets.delete(pl.partition);
    if (pl.markRestored() && this.current(pl)) this.d.runtime.resume(this.d.topics.events, [pl.partition]);
  }

  async assigned(assignment: Record<string, number[]>): Promise<void> {
    const { topics, log } = this.d;
    const gen = this.generation;
    const eventsParts = assignment[topics.events] ?? [];
    const containerParts = new Set(assignment[topics.containers] ?? []);
    for (const p of [...this.tables.keys()]) if (!eventsParts.includes(p)) this.tables.delete(p);
    const fresh: PartitionPipeline[] = [];
    for (const p of eventsParts) {
      let metadata = this.tables.get(p);
      if (metadata === undefined) {
        metadata = new MetadataTable(this.d.retentionNs);
        this.tables.set(p, metadata);
      }
      const pl = new PartitionPipeline(p, gen, metadata, this.d.pipelineDeps);
      this.pipelines.set(p, pl);
      fresh.push(pl);
    }
    if (fresh.length > 0) this.d.runtime.pause(topics.events, eventsParts);
    this.d.hooks.onAssigned?.({ memberId: this.memberId, generation: gen, assignment });
    const init = this.restore(gen, fresh, containerParts);
    for (const pl of fresh) pl.init = init;
    await init;
    setTimeout(() => {
      for (const pl of fresh)
        if (this.current(pl) && !pl.restored()) {
          log.warn({ partition: pl.partition }, 'containers topic not restored in time; events join late');
          this.markRestored(pl);
        }
    }, this.d.restoreTimeoutMs).unref();
  }

  /** Reads the recorded cuts and alert state, then starts events where the containers are read. */
  private async restore(gen: number, fresh: PartitionPipeline[], containerParts: Set<number>): Promise<void> {
    const { topics, log } = this.d;
    // Without the recorded cuts the first batches could be cut differently than before a
    // crash (and duplicate rows), so keep asking until the broker answers or the
    // assignment is gone.
    let delay = this.d.retryInitialMs;
    let fetched: Awaited<ReturnType<GroupRuntime['assignmentOffsets']>>;
    for (;;) {
      try {
        // Bounded per attempt: a read stuck on a connection to a broker that died (the client's
        // own retries can take minutes) must not hold the paused partitions; ask again instead.
        fetched = await withDeadline(
          this.d.runtime.assignmentOffsets(topics.events, topics.containers),
          OFFSETS_READ_DEADLINE_MS,
          'reading committed offsets',
        );
        break;
      } catch (err) {
        if (gen !== this.generation) return;
        log.warn(
          { err: (err as Error).message, delayMs: delay },
          'reading committed offsets failed; retrying',
        );
        await sleep(delay);
        delay = Math.min(delay * 2, this.d.retryMaxMs);
      }
    }
    const { committed, ends } = fetched;
    // Alert state before the first event (events stay paused until markRestored below).
    await Promise.all(
      fresh.map((pl) =>
        this.d.alertStates.restore(
          pl.partition,
          pl.alerts,
          committed.find((x) => x.partition === pl.partition),
          () => gen === this.generation,
        ),
      ),
    );
    for (const pl of fresh) {
      const c = committed.find((x) => x.partition === pl.partition);
      ({ forcedCut: pl.forcedCut, checkThrough: pl.checkThrough } = assignmentStart(c));
      if (pl.forcedCut !== undefined)
        log.info({ partition: pl.partition, cut: String(pl.forcedCut) }, 'resuming a recorded cut');
      const end = ends.find((e) => e.partition === pl.partition);
      const high = end === undefined ? 0n : BigInt(end.high);
      const readUpTo = this.containersRead.get(pl.partition) ?? -1n;
      if (!containerParts.has(pl.partition) || end === undefined || end.high === end.low || readUpTo >= high)
        this.markRestored(pl);
      else this.restoreTargets.set(pl.partition, { pipeline: pl, high });
    }
  }
}
