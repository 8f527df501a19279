// Writing one table's rows of a cut: the retry layer, exactly-once on re-processing (only
// the messages the table does not have yet), and the split of a batch ClickHouse rejects as
// bad data into per-message sub-inserts whose still-rejected messages become dead letters.
import { createHash } from 'node:crypto';
import { isRetriable, PoisonError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { DeadLetter } from '../../schemas/types.js';
import { toJsonEachRow } from './clickhouse/writer.js';
import { boundedDeadLetter, REASON, reasonOf } from './dead-letters.js';
import { asRows, EventColumns, type TableRows } from './event-columns.js';
import {
  type CutBatch,
  dedupToken,
  type MessageRows,
  type Row,
  rowsByMessage,
  splitRejected,
} from './partition-batch.js';
import type { ProcessorStats, RowSink } from './processor-types.js';
import { DEAD_LETTERS_TABLE, INGEST_LOSSES_TABLE, sourceColumns } from './rows.js';

/** Thrown when the partition stopped being ours mid-write: the batch is dropped uncommitted. */
export class LostPartitionError extends Error {}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** What writing a partition's rows needs: the store, ownership, and where to count. */
export interface InsertContext {
  store: RowSink;
  /** The events topic (tokens and dead-letter sources name it). */
  topic: string;
  partition: number;
  groupId: string;
  owned(): boolean;
  /** Keeps group membership alive while retrying. */
  heartbeat(): Promise<void>;
  retryInitialMs: number;
  retryMaxMs: number;
  stats: ProcessorStats;
  log: Logger;
  /** Counts a dead letter and logs a sample per reason. */
  noteDeadLetter(reason: string, fields: Record<string, unknown>): void;
}

/**
 * Runs `fn` until it succeeds, with backoff, while the partition is owned (else throws
 * LostPartitionError). Never skips a failed write (Vector #24215): a non-retriable error that
 * is not a rejection of the rows is a bug or a schema mismatch, retried loudly.
 */
export async function retryWhileOwned(
  ctx: InsertContext,
  what: string,
  fn: () => Promise<void>,
  worthRetrying: (err: unknown) => boolean = () => true,
): Promise<void> {
  let delay = ctx.retryInitialMs;
  for (let attempt = 1; ; attempt++) {
    if (!ctx.owned()) throw new LostPartitionError(what);
    try {
      await fn();
      return;
    } catch (err) {
      if (!ctx.owned()) throw new LostPartitionError(what);
      if (!worthRetrying(err)) throw err;
      ctx.stats.insertRetries++;
      const level = isRetriable(err) ? 'warn' : 'error';
      ctx.log[level](
        { err: (err as Error).message, what, attempt, delayMs: delay, partition: ctx.partition },
        `${what} failed; retrying`,
      );
      const until = Date.now() + delay;
      while (Date.now() < until) {
        await sleep(Math.min(1_000, until - Date.now()));
        await ctx.heartbeat();
      }
      delay = Math.min(delay * 2, ctx.retryMaxMs);
    }
  }
}

/**
 * Inserts what `next(attempt)` gives, retrying until written or rejected as bad data (the
 * PoisonError is returned). Rows of our own tables that ClickHouse refuses are our bug:
 * retried loudly, never dead-lettered.
 */
async function insertWithRetry(
  ctx: InsertContext,
  table: string,
  next: (attempt: number) => Promise<{ rows: TableRows; token: string }>,
  shareable: boolean,
): Promise<PoisonError | undefined> {
  let rejection: PoisonError | undefined;
  let attempt = 0;
  await retryWhileOwned(ctx, `insert ${table}`, async () => {
    const part = await next(attempt++);
    if (part.rows.length === 0) return;
    try {
      await ctx.store.insert(table, part.rows, part.token, shareable);
    } catch (err) {
      if (err instanceof PoisonError && table !== DEAD_LETTERS_TABLE && table !== INGEST_LOSSES_TABLE)
        rejection = err;
      else throw err;
    }
  });
  return rejection;
}

/**
 * One insert under a token, with retries; resolves to the PoisonError when ClickHouse
 * rejects the rows as bad data. For rows that do not say which events message they came
 * from (collector stats): a retry after more than dedupWindow inserts could repeat them.
 */
export function insertByToken(
  ctx: InsertContext,
  table: string,
  rows: Row[],
  token: string,
): Promise<PoisonError | undefined> {
  return insertWithRetry(ctx, table, async () => ({ rows, token }), false);
}

/**
 * Inserts `rows` (the messages [first, last] of the partition) with retries; resolves to
 * the PoisonError when ClickHouse rejects them as bad data. When the rows may be there
 * already, in part or whole (`resumed`: the batch was cut by a writer that died; or a
 * retry, after a failure that may have landed), only the messages the table does not have
 * yet are written: exactly-once for any delay, not only within the tokens ClickHouse
 * remembers (the last dedupWindow inserts of the table).
 */
export function insertOrReject(
  ctx: InsertContext,
  table: string,
  first: bigint,
  last: bigint,
  rows: TableRows,
  resumed: boolean,
): Promise<PoisonError | undefined> {
  // Shareable: every attempt after the first (and every resumed one) checks what landed.
  return insertWithRetry(
    ctx,
    table,
    (attempt) => pendingRows(ctx, table, first, last, rows, resumed || attempt > 0),
    true,
  );
}

/**
 * The rows of messages [first, last] that `table` does not have yet, and their token: the
 * range's token when none are there; when some are, the token names the rest (the range
 * plus a digest of the offsets found), so a repeat of this same insert is dropped too.
 * An insert is all-or-nothing, so a message's rows in a table are all there or none.
 */
async function pendingRows(
  ctx: InsertContext,
  table: string,
  first: bigint,
  last: bigint,
  rows: TableRows,
  check: boolean,
): Promise<{ rows: TableRows; token: string }> {
  const token = dedupToken(table, ctx.topic, ctx.partition, first, last);
  if (!check) return { rows, token };
  const written = await ctx.store.writtenOffsets(table, ctx.topic, ctx.partition, first, last, rows);
  if (written.size === 0) return { rows, token };
  const column = sourceColumns(table).offset;
  const kept = asRows(rows).filter((r) => !written.has(String(r[column])));
  const rest = rows instanceof EventColumns ? rows.select(kept) : kept;
  ctx.stats.alreadyWritten += rows.length - rest.length;
  ctx.log.info(
    {
      table,
      partition: ctx.partition,
      first: String(first),
      last: String(last),
      found: rows.length - rest.length,
    },
    'rows of a re-processed batch were already written; writing only the rest',
  );
  const digest = createHash('sha256')
    .update([...written].sort().join(','))
    .digest('hex')
    .slice(0, 16);
  return { rows: rest, token: `${token}~${digest}` };
}

/** One table's rows of a cut, retried until written (or the partition is lost); never split. */
export async function insertWhole(
  ctx: InsertContext,
  cut: CutBatch,
  table: string,
  rows: TableRows,
): Promise<void> {
  if (rows.length === 0) return;
  const rejection = await insertOrReject(ctx, table, cut.firstOffset, cut.lastOffset, rows, cut.resumed);
  // Only dead letters and losses come here un-splittable; any other rejection is a bug.
  if (rejection !== undefined) throw rejection;
}

/**
 * One table's rows of a cut, under the batch's token. When ClickHouse rejects them as bad
 * data (PoisonError), they are split by source message (splitRejected) with sub-inserts
 * under `table:topic:partition:o1-o2` of their offset range; every message still rejected
 * alone becomes a dead letter (appended to `rejected`). Returns the rows that landed.
 *
 * Sound because an insert is all-or-nothing here: a rejected insert left no rows behind
 * (one block: batches stay far below max_insert_block_size, 1,048,449 rows / 256 MB, and
 * constraints and parsing fail the whole block). Other errors are retried: transient ones
 * with backoff, and the ones a person must fix (unknown table, auth, syntax) loudly, never
 * dead-lettered.
 */
export async function insertTable(
  ctx: InsertContext,
  cut: CutBatch,
  table: string,
  rows: TableRows,
  rejected: DeadLetter[],
): Promise<TableRows> {
  const insert = (first: bigint, last: bigint, part: TableRows) =>
    insertOrReject(ctx, table, first, last, part, cut.resumed);
  const rejection = await insert(cut.firstOffset, cut.lastOffset, rows);
  if (rejection === undefined) return rows;
  const messages = rowsByMessage(asRows(rows));
  if (messages === undefined) {
    // Rows without their source offset can't be split: a bug, retried loudly.
    ctx.log.error({ table, partition: ctx.partition }, 'rejected rows carry no kafka_offset; not splittable');
    await insertWhole(ctx, cut, table, rows);
    return rows;
  }
  ctx.log.warn(
    {
      table,
      partition: ctx.partition,
      first: String(cut.firstOffset),
      last: String(cut.lastOffset),
      messages: messages.length,
      err: rejection.message,
    },
    'ClickHouse rejected the batch as bad data; splitting it by source message',
  );
  const bad = await splitRejected(messages, insert, rejection);
  if (bad.length === 0) return rows; // every part landed (the rejection did not repeat)
  const badOffsets = new Set<bigint>();
  for (const b of bad) {
    badOffsets.add(b.offset);
    rejected.push(rejectedDeadLetter(ctx, table, b));
  }
  return messages.filter((m) => !badOffsets.has(m.offset)).flatMap((m) => m.rows);
}

/**
 * The dead letter of one message's rows that `table` rejected (counted and logged).
 *
 * `raw` holds the rejected rows as JSONEachRow, whatever format the insert used (a person
 * can read it and re-insert it as is; the format is named in `error`), not the source
 * message's bytes: the batch keeps rows, not bytes (holding every message's bytes until its
 * batch commits would grow every batch for a rare path), and only this table refused its
 * rows, while the message's rows in other tables landed, so replaying the message would
 * duplicate them. `key` is null: rows do not keep the message key.
 */
function rejectedDeadLetter(
  ctx: InsertContext,
  table: string,
  message: MessageRows & { error: PoisonError },
): DeadLetter {
  const error = `insert into ${table} rejected ${message.rows.length} rows of this message (raw: the rows as JSONEachRow): ${message.error.message}`;
  const reason = reasonOf(message.error, REASON.insertRejected);
  ctx.noteDeadLetter(reason, {
    topic: ctx.topic,
    partition: ctx.partition,
    offset: String(message.offset),
    table,
    rows: message.rows.length,
    err: message.error.message,
  });
  return boundedDeadLetter(
    {
      topic: ctx.topic,
      partition: ctx.partition,
      offset: message.offset,
      key: null,
      consumerGroup: ctx.groupId,
    },
    reason,
    error,
    Buffer.from(toJsonEachRow(message.rows)),
  );
}
