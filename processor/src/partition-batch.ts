// One partition's open batch: the rows built from a contiguous run of messages
// [firstOffset, lastOffset], grouped by ClickHouse table, plus the rows still waiting for
// late container metadata. A batch covers whole messages only, so the rows of a batch are
// a function of its offset range: after a crash the same range rebuilds the same rows
// (join fields may differ, but deduplication is by token, and the token names the range).
import type { EventBytes } from '../../schemas/codec.js';
import { EventColumns, type KindLayout, kindLayout, type TableRows } from './event-columns.js';
import { applyHost, applyJoin, markPending } from './join-identity.js';
import type { ContainerMeta } from './metadata-table.js';
import {
  type DecodedEvent,
  DUPLICATE_MESSAGE,
  type JoinIdentity,
  type LossRow,
  type MessageSource,
} from './rows.js';

/** A ClickHouse row: column name -> value, exactly what is inserted. */
export type Row = Record<string, unknown>;

/**
 * One event's row as an object (a view of its batch's columns, event-columns.ts) and what
 * alerts, rules and the enriched topic need beyond its columns; only `columns` is inserted
 * (the row itself: its envelope and join columns are read through `$src` and `$id`).
 */
export interface EventRow {
  readonly columns: Row;
  /** The event's wall-clock ns (the `time` column). */
  readonly timeNs: bigint;
  /**
   * While the enriched topic is on, what it sends of the event: the message's bytes (event
   * `index` of them, copied as they arrived), or when the writer used another schema version
   * (no bytes) the decoded event, encoded again. Bytes hold no JS object per event.
   */
  readonly bytes: EventBytes | undefined;
  readonly index: number;
  readonly event: DecodedEvent | undefined;
  /**
   * The container record the row was joined with, or (join_state 'pending') the one that
   * knows its cgroup by path only: rules name the workload from it (workload.ts).
   */
  readonly meta: ContainerMeta | undefined;
  readonly $src: MessageSource;
  /** The join columns: one shared object per container record (rows.ts JoinIdentity). */
  $id: JoinIdentity;
}

/** A row whose cgroup had no metadata yet; resolved in place if metadata arrives in time. */
interface Waiting {
  row: EventRow;
  node: string;
  cgroupId: bigint;
  atNs: bigint;
  deadlineMs: number;
  resolved: boolean;
}

export interface BatchLimits {
  maxRows: number;
  maxMs: number;
  /**
   * A batch of fewer rows than this is not cut at maxMs but at smallMaxMs: every cut costs
   * an insert per table, and an insert's fixed cost (not its rows) is what a trickle spends
   * its CPU on (docs/processor.md). 0 = every batch is cut at maxMs.
   */
  smallRows: number;
  smallMaxMs: number;
  /**
   * ...and a batch still under trickleRows at smallMaxMs waits until trickleMaxMs: a
   * partition that gets a few hundred rows a second spends its CPU on inserts, not rows.
   * 0 = no such tier (cut at smallMaxMs).
   */
  trickleRows: number;
  trickleMaxMs: number;
  lateWaitMs: number;
  lateMaxRows: number;
}

export interface CutBatch {
  firstOffset: bigint;
  lastOffset: bigint;
  /** Plain rows (event_batches, dead letters), and each event kind's columns. */
  tables: Map<string, TableRows>;
  rows: number;
  /** Rows written with join_state 'pending' because their metadata did not arrive in time. */
  latePending: number;
  /** Rows already older than their table's TTL on arrival, by node then table. */
  expired: Map<string, Map<string, number>>;
  /** Messages Kafka held twice, left out of the batch, by node. */
  duplicates: Map<string, DuplicateCount>;
  /** Some of its rows may be written: cut by a writer that died, or below the position read at assignment. */
  resumed: boolean;
}

/** Duplicates of one node in a batch: how many, and the first one, for the loss row's detail. */
export interface DuplicateCount {
  messages: number;
  events: number;
  first: { bootId: string; sequence: bigint; offset: bigint };
}

/**
 * What a cut knowingly does not deliver in full, found while it was built: rows already
 * older than their raw table's TTL, and messages left out as copies Kafka held twice.
 */
export function cutLosses(cut: CutBatch, rawTtlDays: number | undefined): LossRow[] {
  const out: LossRow[] = [];
  for (const [node, perTable] of cut.expired)
    for (const [table, rows] of perTable)
      out.push({ node, what: table, reason: 'older_than_ttl', rows, detail: `TTL ${rawTtlDays} days` });
  for (const [node, c] of cut.duplicates)
    out.push({
      node,
      what: 'events',
      reason: DUPLICATE_MESSAGE,
      rows: c.events,
      detail:
        `${c.messages} message(s) Kafka held twice, left out; the first: boot ${c.first.bootId}` +
        ` sequence ${c.first.sequence} at offset ${c.first.offset}`,
    });
  return out;
}

/** Leaves only `landed` (its rows that were written: views, for an event table) of `table` in the cut. */
export function keepLanded(cut: CutBatch, table: string, landed: TableRows): void {
  const rows = cut.tables.get(table);
  cut.tables.set(
    table,
    rows instanceof EventColumns && !(landed instanceof EventColumns) ? rows.select(landed) : landed,
  );
}

/** The event tables of a cut, by table (what alerts and the enriched topic read). */
export function eventTables(cut: CutBatch): Map<string, EventColumns> {
  const out = new Map<string, EventColumns>();
  for (const [table, rows] of cut.tables) if (rows instanceof EventColumns) out.set(table, rows);
  return out;
}

export class PartitionBatch {
  firstOffset: bigint | undefined;
  lastOffset: bigint | undefined;
  tables = new Map<string, Row[] | EventColumns>();
  rows = 0;
  openedAtMs = 0;
  private waiting: Waiting[] = [];
  private waitHead = 0;
  private waitingByKey = new Map<string, Map<bigint, Waiting[]>>();
  waitingCount = 0;
  /** Rows that found the late buffer full and went straight to 'pending' (counted, never silent). */
  lateOverflow = 0;
  private expired = new Map<string, Map<string, number>>();
  private duplicates = new Map<string, DuplicateCount>();

  constructor(private readonly limits: BatchLimits) {}

  /** Marks that message `offset` is part of this batch (even when it produced no rows). */
  addMessage(offset: bigint, nowMs: number): void {
    if (this.firstOffset === undefined) {
      this.firstOffset = offset;
      this.openedAtMs = nowMs;
    }
    this.lastOffset = offset;
  }

  addRow(table: string, row: Row): void {
    let list = this.tables.get(table);
    if (list === undefined) {
      list = [];
      this.tables.set(table, list);
    } else if (list instanceof EventColumns) throw new Error(`a plain row for event table ${table}`);
    list.push(row);
    this.rows++;
  }

  /** Puts `table` (plain rows) in the batch's table order now, before rows of the tables after it. */
  reserveTable(table: string): void {
    if (!this.tables.has(table)) this.tables.set(table, []);
  }

  /** `table`'s columns of kind `layout`, made when the batch has none yet. */
  eventColumns(table: string, layout: KindLayout): EventColumns {
    const cols = this.tables.get(table);
    if (cols instanceof EventColumns) return cols;
    if (cols !== undefined) throw new Error(`an event row for plain table ${table}`);
    const made = new EventColumns(layout);
    this.tables.set(table, made);
    return made;
  }

  /** An event's row in `table`'s columns (join identity UNJOINED): the columns it went to. */
  addEvent(table: string, src: MessageSource, ev: DecodedEvent, timeNs: bigint, index: number): EventColumns {
    const known = this.tables.get(table);
    const cols = known instanceof EventColumns ? known : this.eventColumns(table, kindLayout(ev));
    cols.add(src, ev, timeNs, index);
    this.rows++;
    return cols;
  }

  /** A row of `table` that arrived already older than the table's TTL (it will not stay there). */
  countExpired(node: string, table: string): void {
    let perNode = this.expired.get(node);
    if (perNode === undefined) {
      perNode = new Map();
      this.expired.set(node, perNode);
    }
    perNode.set(table, (perNode.get(table) ?? 0) + 1);
  }

  /** A message left out as a copy of one already seen (sequence-marks.ts). */
  countDuplicate(
    m: { node: string; bootId: string; sequence: bigint; offset: bigint },
    events: number,
  ): void {
    const c = this.duplicates.get(m.node);
    if (c !== undefined) {
      c.messages++;
      c.events += events;
      return;
    }
    const first = { bootId: m.bootId, sequence: m.sequence, offset: m.offset };
    this.duplicates.set(m.node, { messages: 1, events, first });
  }

  /**
   * A row whose container is unknown: waits (bounded) for metadata. Returns false when
   * the late buffer is full; the row stays 'pending' and the overflow is counted.
   */
  addWaiting(row: EventRow, node: string, cgroupId: bigint, atNs: bigint, nowMs: number): boolean {
    if (this.waitingCount >= this.limits.lateMaxRows) {
      this.lateOverflow++;
      return false;
    }
    const w: Waiting = {
      row,
      node,
      cgroupId,
      atNs,
      deadlineMs: nowMs + this.limits.lateWaitMs,
      resolved: false,
    };
    this.waiting.push(w);
    let perNode = this.waitingByKey.get(node);
    if (perNode === undefined) {
      perNode = new Map();
      this.waitingByKey.set(node, perNode);
    }
    const list = perNode.get(cgroupId);
    if (list === undefined) perNode.set(cgroupId, [w]);
    else list.push(w);
    this.waitingCount++;
    return true;
  }

  /**
   * Metadata `arrived` for (node, cgroup): joins the rows waiting for it, once `lookup` (the
   * metadata table's) finds a record that describes the container. Returns how many. A record
   * that knows the cgroup by its path only leaves them waiting, marked as add() marks rows
   * that come after it (markPending): the crash-loop rule then waits for the name too, where
   * an exit with no record at all is not a container's.
   */
  resolve(
    node: string,
    cgroupId: bigint,
    lookup: (atNs: bigint) => ContainerMeta | undefined,
    arrived: ContainerMeta,
  ): number {
    const perNode = this.waitingByKey.get(node);
    const list = perNode?.get(cgroupId);
    if (perNode === undefined || list === undefined) return 0;
    const joined = list.map((w) => lookup(w.atNs));
    if (joined.includes(undefined)) {
      for (const w of list) markPending(w.row, arrived);
      return 0;
    }
    perNode.delete(cgroupId);
    list.forEach((w, i) => {
      applyJoin(w.row, joined[i] as ContainerMeta);
      w.resolved = true;
    });
    this.waitingCount -= list.length;
    return list.length;
  }

  /** Rows found to be the host's (a cgroup_mkdir outside any container arrived late). */
  resolveHost(node: string, cgroupId: bigint): number {
    const perNode = this.waitingByKey.get(node);
    const list = perNode?.get(cgroupId);
    if (perNode === undefined || list === undefined) return 0;
    perNode.delete(cgroupId);
    for (const w of list) {
      applyHost(w.row);
      w.resolved = true;
    }
    this.waitingCount -= list.length;
    return list.length;
  }

  /** Earliest deadline among rows still waiting, or undefined when none wait. */
  private oldestDeadline(): number | undefined {
    while (this.waitHead < this.waiting.length && (this.waiting[this.waitHead] as Waiting).resolved)
      this.waitHead++;
    return this.waitHead < this.waiting.length
      ? (this.waiting[this.waitHead] as Waiting).deadlineMs
      : undefined;
  }

  /**
   * Whether the batch should be cut now. A forced cut (recorded before a crash or a
   * rebalance) must be honoured exactly so the rebuilt batch matches its token.
   * Otherwise: full, or old enough (maxMs; smallMaxMs while it has fewer than smallRows
   * rows; trickleMaxMs while it has fewer than trickleRows), and no row still within its late-metadata wait (unless the batch grew to twice
   * its size, the hard bound on memory). `alongside`: another partition is cutting now, so
   * the small-batch tiers are waived (maxMs still holds): the two cuts' inserts share
   * statements (clickhouse/insert-combiner.ts), and the tiers exist to save inserts.
   */
  shouldCut(nowMs: number, forcedCut: bigint | undefined, alongside = false): boolean {
    if (this.lastOffset === undefined) return false;
    if (forcedCut !== undefined) return this.lastOffset >= forcedCut;
    return nowMs >= this.dueAt(alongside);
  }

  /**
   * When shouldCut turns true if no message arrives and no waiting row resolves meanwhile
   * (undefined: empty batch; never before the batch opened): the pipeline's cut timer is armed for it.
   */
  dueAtMs(): number | undefined {
    return this.lastOffset === undefined ? undefined : Math.max(this.openedAtMs, this.dueAt(false));
  }

  /** The moment the batch is due: its tier's age (a full one at once), held by the oldest late-metadata wait. */
  private dueAt(alongside: boolean): number {
    const { maxRows, maxMs } = this.limits;
    const at =
      this.rows >= maxRows ? Number.NEGATIVE_INFINITY : this.openedAtMs + (alongside ? maxMs : this.dueAge());
    if (this.rows >= 2 * maxRows) return at;
    const deadline = this.oldestDeadline();
    return deadline === undefined ? at : Math.max(at, deadline);
  }

  /** The age at which a batch of this many rows (under maxRows) is due: the small-batch tiers. */
  private dueAge(): number {
    const { maxMs, smallRows, smallMaxMs, trickleRows, trickleMaxMs } = this.limits;
    if (this.rows >= smallRows) return maxMs;
    if (this.rows >= trickleRows) return Math.max(maxMs, smallMaxMs);
    return Math.max(maxMs, smallMaxMs, trickleMaxMs);
  }

  /** Closes the batch: rows still waiting keep join_state 'pending' with their raw ids. */
  cut(): CutBatch {
    if (this.firstOffset === undefined || this.lastOffset === undefined)
      throw new Error('cut of an empty batch');
    return {
      firstOffset: this.firstOffset,
      lastOffset: this.lastOffset,
      tables: this.tables,
      rows: this.rows,
      latePending: this.waitingCount + this.lateOverflow,
      expired: this.expired,
      duplicates: this.duplicates,
      resumed: false,
    };
  }

  isEmpty(): boolean {
    return this.firstOffset === undefined;
  }
}

/** insert_deduplication_token: names exactly the messages a batch covers. */
export function dedupToken(
  table: string,
  topic: string,
  partition: number,
  first: bigint,
  last: bigint,
): string {
  return `${table}:${topic}:${partition}:${first}-${last}`;
}

/** Commit metadata recording a cut before its inserts start, so a restart re-cuts identically. */
export function encodeCut(lastOffset: bigint): string {
  return `ktrail-cut:${lastOffset}`;
}

export function decodeCut(metadata: string | null | undefined): bigint | undefined {
  if (metadata == null || !metadata.startsWith('ktrail-cut:')) return undefined;
  try {
    return BigInt(metadata.slice('ktrail-cut:'.length));
  } catch {
    return undefined;
  }
}

/**
 * What a new owner takes from a partition's committed position (offset and metadata, read at
 * assignment): the cut an earlier owner recorded, which its first batch must end at, and the
 * highest offset that may be written already, up to which cuts check what landed.
 */
export function assignmentStart(committed: { offset: string; metadata: string | null } | undefined): {
  forcedCut: bigint | undefined;
  checkThrough: bigint;
} {
  const forcedCut = decodeCut(committed?.metadata);
  const next = committed === undefined ? -1n : BigInt(committed.offset);
  return { forcedCut, checkThrough: forcedCut !== undefined && forcedCut >= next ? forcedCut : next - 1n };
}

/** The rows one source message contributed to one table of a batch. */
export interface MessageRows {
  offset: bigint;
  rows: Row[];
}

/**
 * A table's rows of a batch grouped by source message (their `kafka_offset` column), in
 * offset order. Undefined when a row does not say which message it came from (it can't be
 * split then).
 */
export function rowsByMessage(rows: readonly Row[]): MessageRows[] | undefined {
  const byOffset = new Map<bigint, Row[]>();
  for (const row of rows) {
    const o = row.kafka_offset;
    if (typeof o !== 'string' && typeof o !== 'bigint' && typeof o !== 'number') return undefined;
    let offset: bigint;
    try {
      offset = BigInt(o);
    } catch {
      return undefined;
    }
    const list = byOffset.get(offset);
    if (list === undefined) byOffset.set(offset, [row]);
    else list.push(row);
  }
  return [...byOffset]
    .map(([offset, list]) => ({ offset, rows: list }))
    .sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
}

/**
 * Isolates the messages whose rows ClickHouse rejects, once the insert of all of `messages`
 * was rejected (`rejection`). Bisects over the messages in offset order: each half is
 * inserted as the range [its first offset, its last offset] (the caller turns the range into
 * the sub-insert's deduplication token); a half that is rejected again is split further, down
 * to single messages, which are returned with the error that rejected them. Halves that land
 * are done. k bad messages among n cost about 2k·log2(n/k) inserts, and the good rows land
 * in few, large inserts.
 *
 * Deterministic: the same messages (and the same rejections, which depend on the rows'
 * content only) give the same sequence of ranges, so a batch rebuilt after a crash mid-split
 * repeats exactly the sub-inserts that already landed, under the same tokens, and ClickHouse
 * drops the repeats. The whole set is never inserted again (its rejection is given), and no
 * half covers both the first and the last message, so no sub-range token equals the batch's.
 */
export async function splitRejected<E>(
  messages: readonly MessageRows[],
  insert: (first: bigint, last: bigint, rows: Row[]) => Promise<E | undefined>,
  rejection: E,
): Promise<Array<MessageRows & { error: E }>> {
  const rejected: Array<MessageRows & { error: E }> = [];
  const visit = async (lo: number, hi: number, error: E): Promise<void> => {
    if (lo === hi) {
      rejected.push({ ...(messages[lo] as MessageRows), error });
      return;
    }
    const mid = (lo + hi) >>> 1;
    for (const [a, b] of [
      [lo, mid],
      [mid + 1, hi],
    ] as const) {
      const rows: Row[] = [];
      for (let i = a; i <= b; i++) for (const row of (messages[i] as MessageRows).rows) rows.push(row);
      const err = await insert(
        (messages[a] as MessageRows).offset,
        (messages[b] as MessageRows).offset,
        rows,
      );
      if (err !== undefined) await visit(a, b, err);
    }
  };
  if (messages.length > 0) await visit(0, messages.length - 1, rejection);
  return rejected;
}
