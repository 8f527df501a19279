// One events partition's pipeline: messages in, cut into batches, each batch written
// exactly once, then its end committed. Exactly-once rows come from three rules
// (DESIGN.md pitfalls 1-4):
// - a batch covers whole messages [first, last] of one partition; before its inserts start,
//   the cut is recorded as commit metadata on the partition's current watermark, so a
//   restart or the next owner re-cuts exactly the same range;
// - every insert carries the token table:topic:partition:first-last, so a repeated insert
//   of that range is dropped by ClickHouse;
// - the offset after `last` is committed only once every table's insert for the batch
//   succeeded, only while this pipeline still owns the partition.
// Batches of one partition are written one after the other, so the committed watermark is
// always contiguous. The pipeline knows no Kafka client: it gets messages, and commits and
// publishes through small interfaces (OffsetCommitter, RowSink, the outputs).
import { isRetriable } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { DeadLetter } from '../../schemas/types.js';
import type { AlertStateKeeper } from './alert-state.js';
import { type Alert, AlertEngine, type AlertRules } from './alerts.js';
import { buildSideOutputs, type OutputContext, publishSideOutputs } from './batch-outputs.js';
import { boundedDeadLetter, reasonOf } from './dead-letters.js';
import { asRows } from './event-columns.js';
import { addMessage } from './message-intake.js';
import type { MetadataTable } from './metadata-table.js';
import {
  type BatchLimits,
  type CutBatch,
  cutLosses,
  encodeCut,
  keepLanded,
  PartitionBatch,
} from './partition-batch.js';
import type { PendingBudget } from './pending-budget.js';
import type {
  BatchControl,
  InMessage,
  OffsetCommitter,
  PipelineState,
  ProcessorCodec,
  ProcessorHooks,
  ProcessorStats,
  ProcessorTopics,
  RowSink,
} from './processor-types.js';
import { DEAD_LETTERS_TABLE, deadLetterRow, INGEST_LOSSES_TABLE, type LossRow, lossRow } from './rows.js';
import type { OutputResult, OutputSend } from './side-outputs.js';
import {
  type InsertContext,
  insertTable,
  insertWhole,
  LostPartitionError,
  retryWhileOwned,
} from './table-insert.js';

/** What every partition's pipeline shares. */
export interface PipelineDeps {
  store: RowSink;
  committer: OffsetCommitter;
  outputs: { publish(send: OutputSend): Promise<OutputResult> };
  codec: ProcessorCodec;
  topics: ProcessorTopics;
  limits: BatchLimits;
  groupId: string;
  enrichedTopic: boolean;
  rawTtlDays: number | undefined;
  alertRules: AlertRules;
  retryInitialMs: number;
  retryMaxMs: number;
  pending: PendingBudget;
  alertStates: AlertStateKeeper;
  stats: ProcessorStats;
  hooks: ProcessorHooks;
  log: Logger;
  memberId(): string;
  noteDeadLetter(reason: string, fields: Record<string, unknown>): void;
  /** Counts a committed loss (stats, metrics). */
  countLoss(loss: LossRow): void;
  /** A partition cut on its own: the others whose batches are past maxMs cut with it. */
  cutAlongside(partition: number): void;
}

export class PartitionPipeline {
  private phase: PipelineState = 'restoring';
  batch: PartitionBatch;
  /** Cut recorded in commit metadata by an earlier owner: the first batch must end exactly here. */
  forcedCut: bigint | undefined;
  /**
   * Offsets up to here may be written already (-1: none): the committed position and recorded
   * cut read at assignment. A cut starting at or below it checks what landed. The consumer can start
   * below that position: it reads the committed offsets at another moment than the restore,
   * and kafkajs retries an earlier generation's commit under the new one, so it can land
   * between the two reads.
   */
  checkThrough = -1n;
  /** Ready once the forced cut was read from the group's committed offsets. */
  init: Promise<void> = Promise.resolve();
  readonly alerts: AlertEngine;
  private lock: Promise<void> = Promise.resolve();
  private busy = false;
  /** The cut being written (at most one); never rejects, see writeError. */
  private writing: Promise<void> = Promise.resolve();
  /** A write that failed with something other than a lost partition: rethrown by drain(). */
  private writeError: unknown;
  /** Fires when the open batch falls due (PartitionBatch.dueAtMs), so it is cut then, not at a tick. */
  private cutTimer: NodeJS.Timeout | undefined;
  private cutTimerAt = Number.POSITIVE_INFINITY;
  private pendingDeadLetters: DeadLetter[] = [];
  private pendingAlerts: Alert[] = [];
  private readonly insertCtx: InsertContext;
  private readonly outputCtx: OutputContext;

  constructor(
    readonly partition: number,
    readonly generation: number,
    readonly metadata: MetadataTable,
    private readonly d: PipelineDeps,
  ) {
    this.batch = new PartitionBatch(d.limits);
    this.alerts = new AlertEngine(d.alertRules, (node, cgroupId) => metadata.named(node, cgroupId));
    const owned = () => this.owned();
    const common = {
      partition,
      groupId: d.groupId,
      owned,
      stats: d.stats,
      log: d.log,
      noteDeadLetter: d.noteDeadLetter,
    };
    this.insertCtx = {
      ...common,
      store: d.store,
      topic: d.topics.events,
      heartbeat: () => d.committer.heartbeat(),
      retryInitialMs: d.retryInitialMs,
      retryMaxMs: d.retryMaxMs,
    };
    this.outputCtx = {
      ...common,
      codec: d.codec,
      topics: d.topics,
      enrichedTopic: d.enrichedTopic,
      outputs: d.outputs,
      alerts: this.alerts,
    };
  }

  state(): PipelineState {
    return this.phase;
  }

  owned(): boolean {
    return this.phase !== 'revoked';
  }

  restored(): boolean {
    return this.phase !== 'restoring';
  }

  /** The containers topic was read: messages may come. Returns false when already open or revoked. */
  markRestored(): boolean {
    if (this.phase !== 'restoring') return false;
    this.phase = 'open';
    return true;
  }

  /** The partition is no longer ours: writes in flight stop before their next step. */
  revoke(): void {
    this.phase = 'revoked';
    this.disarmCutTimer();
  }

  /** Serialises work on the partition (message batches, the flush timer, stop). */
  withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(async () => {
      this.busy = true;
      try {
        return await fn();
      } finally {
        this.busy = false;
      }
    });
    this.lock = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * A fetched batch of events messages, in order. Stops (leaving the rest unresolved, so it
   * is fetched again) when the batch goes stale, the partition is lost or still restoring,
   * or the pending-rows bound holds it back.
   */
  async consume(messages: InMessage[], ctl: BatchControl): Promise<void> {
    await this.init;
    await this.withLock(async () => {
      let lastBeat = Date.now();
      for (const message of messages) {
        if (!ctl.active() || !this.owned() || this.phase === 'restoring') return;
        if (this.d.pending.holdBack(this.partition, this.forcedCut !== undefined && !this.batch.isEmpty()))
          return;
        const now = Date.now();
        const before = this.batch.rows;
        this.add(message, now);
        this.d.pending.add(this.batch, this.batch.rows - before);
        ctl.resolveOffset(message.offset);
        if (this.mustCut(now) || this.phase === 'failed') await this.flush();
        if (now - lastBeat > 1_000) {
          lastBeat = now;
          await ctl.heartbeat();
        }
      }
    });
    this.armCutTimer();
  }

  /** One events message into the open batch (message-intake.ts). */
  add(message: InMessage, now: number): void {
    const { d } = this;
    addMessage(
      {
        batch: this.batch,
        metadata: this.metadata,
        alerts: this.alerts,
        raised: this.pendingAlerts,
        partition: this.partition,
        deps: d,
        deadLetter: (m, err) => this.deadLetter(d.topics.events, m, err),
      },
      message,
      now,
    );
  }

  /** The DeadLetter for a message that could not be handled (counted and logged). */
  toDeadLetter(topic: string, message: InMessage, err: unknown, reasonOverride?: string): DeadLetter {
    const reason = reasonOverride ?? reasonOf(err);
    const error = (err as Error).message ?? String(err);
    this.d.noteDeadLetter(reason, { topic, partition: this.partition, offset: message.offset, err: error });
    const source = {
      topic,
      partition: this.partition,
      offset: BigInt(message.offset),
      key: message.key,
      consumerGroup: this.d.groupId,
    };
    return boundedDeadLetter(source, reason, error, message.value ?? Buffer.alloc(0));
  }

  /**
   * Poison goes to the dead-letter topic and, for events, to the dead_letters table as part
   * of the batch (so it is exactly-once too). Container records are re-read on every
   * assignment, so they only go to the topic (at-least-once) and the counter.
   */
  deadLetter(topic: string, message: InMessage, err: unknown): void {
    const dl = this.toDeadLetter(topic, message, err);
    this.pendingDeadLetters.push(dl);
    if (topic === this.d.topics.events) this.batch.addRow(DEAD_LETTERS_TABLE, deadLetterRow(dl));
  }

  /**
   * Whether consumption must stop to cut now. While a write is in flight a due batch keeps
   * growing, up to its row bound, instead: slow inserts then make fewer, bigger inserts
   * rather than a stalled consumer (the write's end cuts it, see flush).
   */
  mustCut(now: number): boolean {
    if (!this.batch.shouldCut(now, this.forcedCut)) return false;
    return (
      this.phase !== 'writing' || this.forcedCut !== undefined || this.batch.rows >= this.d.limits.maxRows
    );
  }

  /**
   * Cuts the batch when it is due and nothing else holds it (timer, end of a write), or with
   * `alongside` when another partition cut and this batch is past maxMs (shouldCut).
   */
  cutIfDue(alongside = false): void {
    // A failed write is left for consume to rethrow (see drain): no cut may commit past it.
    if (this.busy || this.phase !== 'open') return;
    // A forced cut is only honoured from consume (it needs its exact last message).
    if (this.forcedCut !== undefined) return;
    if (!this.batch.shouldCut(Date.now(), undefined, alongside)) {
      this.armCutTimer();
      return;
    }
    this.withLock(() =>
      this.batch.shouldCut(Date.now(), this.forcedCut, alongside) ? this.flush(alongside) : Promise.resolve(),
    ).catch((err) => this.d.log.error({ err, partition: this.partition }, 'timed flush failed'));
  }

  /**
   * Arms the cut timer for the open batch's due time unless it fires earlier already. A
   * batch not cut when it fires (busy, writing) is cut by what ends that: the end of the
   * consume call or of the write re-arms or cuts.
   */
  private armCutTimer(): void {
    if (this.phase !== 'open') return;
    const at = this.batch.dueAtMs();
    if (at === undefined || at >= this.cutTimerAt) return;
    this.disarmCutTimer();
    this.cutTimerAt = at;
    this.cutTimer = setTimeout(
      () => {
        this.cutTimer = undefined;
        this.cutTimerAt = Number.POSITIVE_INFINITY;
        this.cutIfDue();
      },
      Math.max(0, at - Date.now()),
    );
    this.cutTimer.unref();
  }

  private disarmCutTimer(): void {
    if (this.cutTimer !== undefined) clearTimeout(this.cutTimer);
    this.cutTimer = undefined;
    this.cutTimerAt = Number.POSITIVE_INFINITY;
  }

  /** Waits for the write in flight; rethrows its failure (consume or stop sees it). */
  async drain(): Promise<void> {
    await this.writing;
    const err = this.writeError;
    if (err !== undefined) {
      this.writeError = undefined;
      if (this.phase === 'failed') this.phase = 'open';
      throw err;
    }
  }

  /**
   * Cuts the open batch and starts writing it (insert every table, side outputs, commit the
   * watermark), without waiting for the write: consumption goes on into the next batch while
   * ClickHouse inserts. At most one cut is in flight, because the commit metadata records one
   * cut range: the next cut first waits here for the previous write. Call under withLock.
   */
  async flush(alongside = false): Promise<void> {
    await this.drain();
    if (this.batch.isEmpty()) return;
    const held = this.batch;
    this.disarmCutTimer();
    const cut = this.batch.cut();
    const wasForced = this.forcedCut !== undefined;
    this.forcedCut = undefined; // the batch after a forced cut is an ordinary one
    this.batch = new PartitionBatch(this.d.limits);
    const deadLetters = this.pendingDeadLetters;
    this.pendingDeadLetters = [];
    const alerts = this.pendingAlerts;
    this.pendingAlerts = [];
    this.d.stats.latePending += cut.latePending;
    cut.resumed = wasForced || cut.firstOffset <= this.checkThrough;
    if (this.phase === 'open' || this.phase === 'restoring') this.phase = 'writing';
    this.writing = this.writeCut(cut, wasForced, deadLetters, alerts)
      .catch((err: unknown) => {
        this.d.log.error({ err, partition: this.partition }, 'writing a batch failed');
        this.writeError = err;
      })
      .finally(() => {
        if (this.phase === 'writing') this.phase = this.writeError === undefined ? 'open' : 'failed';
        this.d.pending.release(held);
        this.cutIfDue(); // what accumulated meanwhile may be due already
      });
    if (!alongside) this.d.cutAlongside(this.partition);
  }

  private async commit(offset: bigint, metadata: string | null): Promise<void> {
    try {
      // A coordinator that cannot be reached (moving, restarting broker) is waited for: no
      // rejoin follows it, so giving the partition up would stall it until the next rebalance.
      await retryWhileOwned(
        this.insertCtx,
        'commit',
        () => this.d.committer.commit(this.partition, offset, metadata),
        isRetriable,
      );
    } catch (err) {
      if (err instanceof LostPartitionError) throw err;
      // A commit refused by the coordinator means our generation is over.
      this.d.log.warn(
        { err, partition: this.partition },
        'commit refused; dropping the partition until the rejoin',
      );
      this.revoke();
      throw new LostPartitionError('commit');
    }
  }

  /**
   * Writes one cut: every table's rows (rejected messages split off as dead letters), the
   * side outputs built (a message whose output can't be built becomes a dead letter), the
   * dead letters, the outputs published (skipped and counted when their topic is down),
   * the batch's losses, then the commit. Every insert carries the batch's token.
   */
  private async writeCut(cut: CutBatch, wasForced: boolean, deadLetters: DeadLetter[], alerts: Alert[]) {
    const { d } = this;
    const committedLosses: LossRow[] = [];
    try {
      // Record the cut before any insert, unless an earlier owner already did.
      if (!wasForced) await this.commit(cut.firstOffset, encodeCut(cut.lastOffset));
      let rejectedRows = 0;
      const rejected: DeadLetter[] = [];
      for (const [table, rows] of cut.tables) {
        if (rows.length === 0 || table === DEAD_LETTERS_TABLE) continue;
        const landed = await insertTable(this.insertCtx, cut, table, rows, rejected);
        if (landed !== rows) {
          // Side outputs (alerts, enriched) describe only rows that are in ClickHouse.
          rejectedRows += rows.length - landed.length;
          keepLanded(cut, table, landed);
        }
        await d.committer.heartbeat(); // a batch of many tables can take longer than a session timeout
      }
      d.hooks.onStored?.({ partition: this.partition, first: cut.firstOffset, last: cut.lastOffset });
      const built = buildSideOutputs(this.outputCtx, cut, alerts);
      // Dead letters after the tables, under the batch's token like every table: they include
      // the rows rejected above, and a rebuilt batch rejects the same messages (its repeat is
      // dropped).
      const newDead = [...rejected, ...built.deadLetters];
      const deadRows = [...asRows(cut.tables.get(DEAD_LETTERS_TABLE) ?? []), ...newDead.map(deadLetterRow)];
      await insertWhole(this.insertCtx, cut, DEAD_LETTERS_TABLE, deadRows);
      const skipped = await publishSideOutputs(
        this.outputCtx,
        cut,
        [...deadLetters, ...newDead],
        built.sends,
      );
      committedLosses.push(...cutLosses(cut, d.rawTtlDays), ...built.losses, ...skipped);
      const now = Date.now();
      const lossRows = committedLosses.map((l) =>
        lossRow(l, this.partition, cut.firstOffset, cut.lastOffset, now),
      );
      await insertWhole(this.insertCtx, cut, INGEST_LOSSES_TABLE, lossRows);
      await d.alertStates.save(this.partition, this.alerts, cut, () => this.owned());
      await this.commit(cut.lastOffset + 1n, null);
      cut.rows += newDead.length - rejectedRows;
    } catch (err) {
      if (err instanceof LostPartitionError) {
        this.dropped(cut.firstOffset, cut.lastOffset);
        return;
      }
      throw err;
    }
    for (const loss of committedLosses) d.countLoss(loss);
    d.stats.rowsWritten += cut.rows;
    d.stats.batchesCommitted++;
    d.hooks.onCommitted?.({
      memberId: d.memberId(),
      generation: this.generation,
      partition: this.partition,
      first: cut.firstOffset,
      last: cut.lastOffset,
      rows: cut.rows,
    });
  }

  /** Counts a batch left uncommitted because the partition was lost (the next owner re-reads it). */
  dropped(first: bigint, last: bigint): void {
    this.d.stats.batchesDropped++;
    this.d.hooks.onBatchDropped?.({ memberId: this.d.memberId(), partition: this.partition, first, last });
  }

  /** For the stats consumer: writing through the same retry layer, while this partition is ours. */
  insertContext(): InsertContext {
    return this.insertCtx;
  }
}
