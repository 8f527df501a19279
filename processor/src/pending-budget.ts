// A bound on the rows one processor holds across all its partitions: rows in open batches
// plus rows of cuts being written. Each partition holds at most one cut being written and one
// open batch (up to twice batchMaxRows while rows wait for metadata), so without a global
// bound a member with many partitions holds partitions x 2-4 x batchMaxRows rows while
// ClickHouse is slow or down: 24 partitions x 100k rows of ~1.2 KB is past any pod limit.
//
// The rule, with hysteresis so a slow insert does not flap fetching on and off:
//   - rows are counted against the batch they enter (add) and uncounted, all of that batch's
//     at once, when the cut made from it is written or dropped, or the open batch is dropped
//     (release; once per batch, so a batch dropped on revocation while its cut was being
//     made is not uncounted twice);
//   - at or above maxRows, a partition that asks to take more messages is told to stop and
//     its fetching is paused (kafkajs consumer.pause): the messages it did not take stay in
//     Kafka, unresolved, and are fetched again after the resume;
//   - once writes bring the rows down to lowRows (half of maxRows), every partition paused
//     here is resumed.
// A partition whose open batch must reach a cut recorded by an earlier owner (a forced cut)
// keeps taking messages: its rows can only be released by reaching that cut, so stopping it
// could hold the budget full forever. Its overshoot is bounded by that cut's range.
import type { Logger } from '../../common/log.js';

/** Fetch control for the events topic (kafkajs consumer.pause / resume on its partitions). */
export interface FetchControl {
  pause(partitions: number[]): void;
  /** Only partitions that may fetch again (owned, restored) are passed on by the caller. */
  resume(partitions: number[]): void;
}

export interface PendingSnapshot {
  rows: number;
  maxRows: number;
  lowRows: number;
  peakRows: number;
  /** Partitions paused by the budget right now. */
  paused: number[];
  /** Times a partition was paused by the budget. */
  pauses: number;
}

export class PendingBudget {
  rows = 0;
  peakRows = 0;
  pauses = 0;
  readonly lowRows: number;
  private readonly held = new Set<number>();
  /** Rows counted per batch (the open batch object), until released. */
  private readonly byBatch = new Map<object, number>();

  constructor(
    readonly maxRows: number,
    private readonly control: FetchControl,
    private readonly log?: Logger,
    lowRows?: number,
  ) {
    if (!(maxRows > 0)) throw new Error(`pending rows bound must be > 0, got ${maxRows}`);
    this.lowRows = lowRows ?? Math.floor(maxRows / 2);
    if (!(this.lowRows >= 0 && this.lowRows < maxRows))
      throw new Error(`low-water mark must be in [0, ${maxRows}), got ${this.lowRows}`);
  }

  /** `rows` rows entered open batch `batch`. */
  add(batch: object, rows: number): void {
    if (rows === 0) return;
    this.byBatch.set(batch, (this.byBatch.get(batch) ?? 0) + rows);
    this.rows += rows;
    if (this.rows > this.peakRows) this.peakRows = this.rows;
  }

  /** The rows of `batch` left memory (its cut was written or dropped, or it was dropped); once. */
  release(batch: object): void {
    const rows = this.byBatch.get(batch);
    if (rows === undefined) return;
    this.byBatch.delete(batch);
    this.rows -= rows;
    if (this.held.size > 0 && this.rows <= this.lowRows) this.resumeAll();
  }

  /** True while `partition` is paused by this bound. */
  holds(partition: number): boolean {
    return this.held.has(partition);
  }

  get full(): boolean {
    return this.rows >= this.maxRows;
  }

  /**
   * Whether `partition` must stop taking messages now (then its fetching is paused until the
   * rows come down to lowRows). `mustFinishCut`: its open batch can only be released by more
   * messages (a forced cut), so it is never held back.
   */
  holdBack(partition: number, mustFinishCut: boolean): boolean {
    if (this.rows < this.maxRows || mustFinishCut) return false;
    if (!this.held.has(partition)) {
      this.held.add(partition);
      this.pauses++;
      this.control.pause([partition]);
      if (this.held.size === 1)
        this.log?.warn(
          { rows: this.rows, maxRows: this.maxRows, partition },
          'pending rows at their bound: pausing fetch until writes catch up',
        );
    }
    return true;
  }

  /** Partitions were revoked: pauses of the old assignment are the consumer's past. */
  forgetPaused(): void {
    this.held.clear();
  }

  snapshot(): PendingSnapshot {
    return {
      rows: this.rows,
      maxRows: this.maxRows,
      lowRows: this.lowRows,
      peakRows: this.peakRows,
      paused: [...this.held],
      pauses: this.pauses,
    };
  }

  private resumeAll(): void {
    const partitions = [...this.held];
    this.held.clear();
    this.log?.info({ rows: this.rows, partitions: partitions.length }, 'pending rows down: resuming fetch');
    this.control.resume(partitions);
  }
}
