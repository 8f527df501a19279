// The processor's RowSink: one insert per (table, batch), always with the batch's
// deduplication token, through the ClickHouse writer's insertOnce (table qualification,
// old servers, chDB's native insert and error classification live there). One attempt
// per call: the pipeline's retry loop (table-insert.ts) is the only one, since it must
// check between attempts that it still owns the partition and keep its session alive.
import type { ClickHouseClient } from '@clickhouse/client';
import { createLogger } from '../../common/log.js';
import { describeClickHouse } from './clickhouse/client.js';
import { classifyClickHouseError, insertOnce } from './clickhouse/writer.js';
import { asRows, type TableRows } from './event-columns.js';
import type { Row } from './partition-batch.js';
import type { RowSink } from './processor-types.js';
import { sourceColumns } from './rows.js';

const log = createLogger('processor.sink');

export function clickHouseSink(client: ClickHouseClient): RowSink {
  let checkUnsupported = false;
  return {
    async insert(table: string, rows: TableRows, dedupToken: string, shareable = false): Promise<void> {
      await insertOnce(client, { table, rows, dedupToken, shareable });
    },

    async writtenOffsets(table, topic, partition, first, last, rows) {
      if (checkUnsupported) return new Set();
      const cols = sourceColumns(table);
      const database = describeClickHouse(client)?.database;
      const qualified = table.includes('.') || database === undefined ? table : `${database}.${table}`;
      const where = [`${cols.partition} = ${partition}`, `${cols.offset} BETWEEN ${first} AND ${last}`];
      if (cols.topic !== undefined) where.push(`${cols.topic} = '${topic.replace(/['\\]/g, '\\$&')}'`);
      const bounds = cols.time === undefined ? undefined : timeBounds(asRows(rows), cols.time);
      if (bounds !== undefined)
        where.push(
          `${cols.time} >= toDateTime64(${bounds.min}, 0, 'UTC')`,
          `${cols.time} < toDateTime64(${bounds.max + 1}, 0, 'UTC')`,
        );
      try {
        const rs = await client.query({
          query: `SELECT DISTINCT toString(${cols.offset}) AS o FROM ${qualified} WHERE ${where.join(' AND ')}`,
          format: 'JSONEachRow',
        });
        return new Set((await rs.json<{ o: string }>()).map((r) => r.o));
      } catch (err) {
        const classified = classifyClickHouseError(err, { table, what: 'written offsets' });
        if (classified.retriable) throw classified;
        // A server that can't answer it (too old for DateTime64, a table of another shape):
        // re-processed batches then rely on the deduplication tokens alone.
        checkUnsupported = true;
        log.warn(
          { table, err: classified.message },
          'this ClickHouse cannot say which rows are written; re-processed batches rely on tokens alone',
        );
        return new Set();
      }
    },
  };
}

/**
 * Whole seconds spanned by rows' DateTime64 values: bigint ns (event rows, rows.ts buildRow)
 * or "seconds.nanoseconds" text (rows.ts dateTime64).
 */
function timeBounds(rows: readonly Row[], column: string): { min: number; max: number } | undefined {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const row of rows) {
    const v = row[column];
    let seconds: number;
    if (typeof v === 'bigint') seconds = Number(v / 1_000_000_000n);
    else if (typeof v === 'string') seconds = Number.parseInt(v, 10);
    else return undefined;
    if (!Number.isFinite(seconds)) return undefined;
    if (seconds < min) min = seconds;
    if (seconds > max) max = seconds;
  }
  return rows.length === 0 ? undefined : { min, max };
}
